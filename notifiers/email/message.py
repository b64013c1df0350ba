"""The invoice e-mail as a MIME message: headers that stay headers, addresses that can be sent.

`render_message` makes the message (text and HTML alternatives, the PDF attached) as the bytes
sent or written, with a Message-ID derived from the idempotency key, so a re-sent notice carries
the same Message-ID and receivers can drop the duplicate. Customer text never starts a new
header: line breaks in a subject or a file name become spaces.

The bytes are composed directly (RFC 5322 / 2045-2049, CRLF lines of at most 78 characters,
quoted-printable text, base64 PDF) rather than through `email.message`, whose generator spent
most of a notice's time on header parsing and folding; only a header that is not plain ASCII
goes through the stdlib's folding (`email.policy.SMTP`). `build_message` is the same message
parsed back, for callers that want to look into it.

    PermanentDeliveryError   the recipient is not exactly one usable address: never sendable
    ConfigurationError       the sender (INVOICES_MAIL_FROM) is not one e-mail address
"""

from __future__ import annotations

import binascii
import email
import email.errors
import email.policy
import functools
import hashlib
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import encode_rfc2231, formatdate, parseaddr

from billing.domain.errors import ConfigurationError, PermanentDeliveryError
from notifiers.base import Outgoing

_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def message_id(key: str, mail_from: str) -> str:
    """The Message-ID of the notice with idempotency key `key`: `<sha256(key)[:32]@domain>`."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{parse_sender(mail_from).domain}>"


@dataclass(frozen=True)
class RenderedMessage:
    """A message ready for the wire: its bytes (CRLF lines) and its Message-ID."""

    data: bytes
    message_id: str
    recipient: str  # the envelope recipient (`parse_recipient`)


def render_message(outgoing: Outgoing, mail_from: str) -> RenderedMessage:
    """The MIME message for `outgoing`: text and HTML alternatives, plus the PDF when attached.

    Raises `PermanentDeliveryError` when the recipient is not exactly one valid address,
    `ConfigurationError` when `mail_from` is not an e-mail address.
    """
    sender = _sender_header(mail_from)  # first: a bad sender is a ConfigurationError
    recipient = parse_recipient(outgoing.recipient)
    mid = message_id(outgoing.key, mail_from)
    # Boundaries from the key: "=_" can occur neither in quoted-printable nor in base64 text.
    seed = hashlib.sha256(outgoing.key.encode("utf-8")).hexdigest()
    body = _part(b"text/plain", _quoted_printable(outgoing.text))
    if outgoing.html:
        body = _multipart(
            "alternative", f"=_alt_{seed[:24]}",
            [body, _part(b"text/html", _quoted_printable(outgoing.html))],
        )  # fmt: skip
    if outgoing.attachment is not None:
        filename, data = outgoing.attachment
        pdf = (
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
            + _header("Content-Disposition", _disposition(_filename(filename)))
            + b"\r\n"
            + _base64_lines(data)
        )
        body = _multipart("mixed", f"=_mix_{seed[24:48]}", [body, pdf])
    headers = b"".join(
        (
            sender,
            _header("To", recipient),
            # The subject may carry customer text: a line break must never start a new header.
            _header("Subject", _single_line(outgoing.subject)),
            b"Date: " + formatdate(usegmt=True).encode("ascii") + b"\r\n",
            b"Message-ID: " + mid.encode("ascii") + b"\r\n",
            b"MIME-Version: 1.0\r\n",
        )
    )
    return RenderedMessage(headers + body, mid, recipient)


def build_message(outgoing: Outgoing, mail_from: str) -> EmailMessage:
    """`render_message`'s message parsed back into an `EmailMessage` (same checks, same errors)."""
    rendered = render_message(outgoing, mail_from)
    return email.message_from_bytes(rendered.data, policy=email.policy.SMTP)


# Plain printable ASCII with no line break: such a header value needs no encoding.
_PLAIN = re.compile(r"[ -~]*")
_FOLD_AT = 78


def _header(name: str, value: str) -> bytes:
    """`Name: value` CRLF; a value that is not plain ASCII or too long for one line is encoded
    and folded by the stdlib (RFC 2047 encoded words)."""
    if _PLAIN.fullmatch(value) and len(name) + 2 + len(value) <= _FOLD_AT:
        return f"{name}: {value}\r\n".encode("ascii")
    policy = email.policy.SMTP
    return policy.header_factory(name, value).fold(policy=policy).encode("utf-8")


@functools.lru_cache(maxsize=16)
def _sender_header(mail_from: str) -> bytes:
    parse_sender(mail_from)
    return _header("From", mail_from)


def _part(content_type: bytes, encoded: bytes) -> bytes:
    return (
        b"Content-Type: " + content_type + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded
    )


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    """A multipart body; each part's bytes end with CRLF, and the CRLF before a delimiter
    belongs to the delimiter (RFC 2046 5.1.1), so a part keeps its last line break."""
    mark = boundary.encode("ascii")
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode("ascii")
    inner = b"".join(b"\r\n--" + mark + b"\r\n" + part for part in parts)
    return head + inner + b"\r\n--" + mark + b"--\r\n"


def _base64_lines(data: bytes) -> bytes:
    """Base64 in CRLF lines of 76 characters (RFC 2045 6.8), ending in CRLF."""
    encoded = binascii.b2a_base64(data, newline=False)
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    return b"\r\n".join(lines) + b"\r\n" if lines else b""


def _quoted_printable(text: str) -> bytes:
    """UTF-8 text as quoted-printable lines of at most 76 characters, CRLF, ending in CRLF."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    if not lines.endswith("\n"):
        lines += "\n"
    encoded = binascii.b2a_qp(lines.encode("utf-8"), quotetabs=False, istext=True)
    return encoded.replace(b"\n", b"\r\n")


def _disposition(filename: str) -> str:
    if _PLAIN.fullmatch(filename) and '"' not in filename and "\\" not in filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*={encode_rfc2231(filename, 'utf-8')}"


def parse_recipient(value: str) -> str:
    """Exactly one bare address (`local@domain`), with an international domain in its ASCII
    form so that no SMTPUTF8 is needed; else `PermanentDeliveryError`."""
    if len(value) <= 254 and _COMMON_ADDRESS.fullmatch(value):
        return value  # what the full parse below returns for such an address, 30 times faster
    return _parse_recipient_fully(value)


# A dot-atom of letters, digits and ._%+- at a domain of LDH labels: the usual address, which
# needs no parsing to be known good.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_COMMON_ADDRESS = re.compile(rf"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@{_LABEL}(?:\.{_LABEL})+")


def _parse_recipient_fully(value: str) -> str:
    invalid = PermanentDeliveryError("recipient is not a single e-mail address")
    if not value or _LINE_BREAKS.search(value) or any(char in value for char in ",;<>\t "):
        raise invalid
    try:
        address = Address(addr_spec=value)
        domain = address.domain.encode("idna").decode("ascii")
    # UnicodeError is a ValueError; "@" alone is a HeaderParseError
    except (ValueError, IndexError, TypeError, email.errors.HeaderParseError):
        raise invalid from None
    if not address.username or "." not in domain or address.addr_spec != value:
        raise invalid
    return f"{value.rpartition('@')[0]}@{domain}"


@functools.lru_cache(maxsize=16)
def parse_sender(mail_from: str) -> Address:
    """The address of `mail_from` ("facturi@x.ro" or "Name <facturi@x.ro>"); else
    `ConfigurationError` (the sender is a setting, wrong for every message alike)."""
    if _LINE_BREAKS.search(mail_from):
        raise ConfigurationError("INVOICES_MAIL_FROM must be one line")
    _, addr = parseaddr(mail_from)
    try:
        address = Address(addr_spec=addr)
    except (ValueError, IndexError, TypeError, email.errors.HeaderParseError):
        address = None
    if address is None or not address.username or not address.domain:
        raise ConfigurationError(f"INVOICES_MAIL_FROM is not an e-mail address: {mail_from!r}")
    return address


def _single_line(text: str) -> str:
    return " ".join(_LINE_BREAKS.sub(" ", text).split())


def _filename(name: str) -> str:
    cleaned = _single_line(name).replace("/", "_").replace("\\", "_").strip(". ")
    return cleaned or "factura.pdf"
