"""The invoice e-mail as a MIME message: headers that stay headers, addresses that can be sent.

`build_message` makes the message (text and HTML alternatives, the PDF attached) with a
Message-ID derived from the idempotency key, so a re-sent notice carries the same Message-ID and
receivers can drop the duplicate. Customer text never starts a new header: line breaks in a
subject or a file name become spaces.

    PermanentDeliveryError   the recipient is not exactly one usable address: never sendable
    ConfigurationError       the sender (INVOICES_MAIL_FROM) is not one e-mail address
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from billing.domain.errors import ConfigurationError, PermanentDeliveryError
from notifiers.base import Outgoing

_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def message_id(key: str, mail_from: str) -> str:
    """The Message-ID of the notice with idempotency key `key`: `<sha256(key)[:32]@domain>`."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{parse_sender(mail_from).domain}>"


def build_message(outgoing: Outgoing, mail_from: str) -> EmailMessage:
    """The MIME message for `outgoing`: text and HTML alternatives, plus the PDF when attached.

    Raises `PermanentDeliveryError` when the recipient is not exactly one valid address,
    `ConfigurationError` when `mail_from` is not an e-mail address.
    """
    parse_sender(mail_from)  # before any header: a bad sender is a ConfigurationError
    recipient = parse_recipient(outgoing.recipient)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = mail_from
    message["To"] = recipient
    # The subject may carry customer text: a line break there must never start a new header.
    message["Subject"] = _single_line(outgoing.subject)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(outgoing.key, mail_from)
    message.set_content(outgoing.text, cte="quoted-printable")
    if outgoing.html:
        message.add_alternative(outgoing.html, subtype="html", cte="quoted-printable")
    if outgoing.attachment is not None:
        filename, data = outgoing.attachment
        message.add_attachment(
            data, maintype="application", subtype="pdf", filename=_filename(filename)
        )
    return message


def parse_recipient(value: str) -> str:
    """Exactly one bare address (`local@domain`), with an international domain in its ASCII
    form so that no SMTPUTF8 is needed; else `PermanentDeliveryError`."""
    invalid = PermanentDeliveryError("recipient is not a single e-mail address")
    if not value or _LINE_BREAKS.search(value) or any(char in value for char in ",;<>\t "):
        raise invalid
    try:
        address = Address(addr_spec=value)
        domain = address.domain.encode("idna").decode("ascii")
    except (ValueError, IndexError, TypeError):  # UnicodeError is a ValueError
        raise invalid from None
    if not address.username or "." not in domain or address.addr_spec != value:
        raise invalid
    return f"{value.rpartition('@')[0]}@{domain}"


def parse_sender(mail_from: str) -> Address:
    """The address of `mail_from` ("facturi@x.ro" or "Name <facturi@x.ro>"); else
    `ConfigurationError` (the sender is a setting, wrong for every message alike)."""
    if _LINE_BREAKS.search(mail_from):
        raise ConfigurationError("INVOICES_MAIL_FROM must be one line")
    _, addr = parseaddr(mail_from)
    try:
        address = Address(addr_spec=addr)
    except (ValueError, IndexError, TypeError):
        address = None
    if address is None or not address.username or not address.domain:
        raise ConfigurationError(f"INVOICES_MAIL_FROM is not an e-mail address: {mail_from!r}")
    return address


def _single_line(text: str) -> str:
    return " ".join(_LINE_BREAKS.sub(" ", text).split())


def _filename(name: str) -> str:
    cleaned = _single_line(name).replace("/", "_").replace("\\", "_").strip(". ")
    return cleaned or "factura.pdf"
