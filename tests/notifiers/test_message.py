"""The e-mail's bytes, composed without `email.message`: whatever the text, a standard parser reads
back exactly the subject, the addresses, the bodies and the attachment that went in, and every
line is a CRLF line short enough for any relay."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain.errors import PermanentDeliveryError
from notifiers.base import Outgoing
from notifiers.email.message import (
    _COMMON_ADDRESS,
    _parse_recipient_fully,
    _single_line,
    build_message,
    message_id,
    parse_recipient,
    render_message,
)

MAIL_FROM = "Facturi Telecom Exemplu SĂ <facturi@telecom-exemplu.ro>"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\r\n.\r\n\n.\n--=_mix_\n%%EOF\n"

# Any text a template or a customer's name can put in a message, line breaks of every kind too.
texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400
) | st.sampled_from(["", " ", "a \n", "\t\n.\n", "ăâîșț ĂÂÎȘȚ\r\nlinie\rdoi", "=" * 200, "x" * 300])


def outgoing(**changes) -> Outgoing:
    fields = {
        "key": "OR00000001:email",
        "recipient": "ana.popescu@example.ro",
        "subject": "Factura OR00000001 de la Telecom Exemplu SA",
        "text": "Bună ziua, Ana Ștefănescu,\nFactura este atașată.\n",
        "html": "<p>Bună ziua, <b>Ana Ștefănescu</b></p>\n",
        "attachment": ("OR00000001.pdf", PDF),
    }
    return Outgoing(**(fields | changes))


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def lines_of(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


def contents(message: email.message.EmailMessage) -> dict:
    body = message.get_body(("plain",))
    html = message.get_body(("html",))
    attachments = list(message.iter_attachments())
    # a parser keeps the CRLF line breaks of the wire in the text it decodes
    return {
        "text": body.get_content().replace("\r\n", "\n") if body is not None else None,
        "html": html.get_content().replace("\r\n", "\n") if html is not None else None,
        "attachments": [(a.get_filename(), a.get_content()) for a in attachments],
    }


def expected_text(text: str) -> str:
    """What a reader gets back: line breaks as LF and the message ending with one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def test_the_message_reads_back_as_it_was_made():
    rendered = render_message(outgoing(), MAIL_FROM)
    message = parsed(rendered.data)

    assert message["From"] == MAIL_FROM
    assert message["To"] == "ana.popescu@example.ro"
    assert message["Subject"] == "Factura OR00000001 de la Telecom Exemplu SA"
    assert message["Message-ID"] == rendered.message_id == message_id("OR00000001:email", MAIL_FROM)
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "multipart/mixed"
    assert contents(message) == {
        "text": "Bună ziua, Ana Ștefănescu,\nFactura este atașată.\n",
        "html": "<p>Bună ziua, <b>Ana Ștefănescu</b></p>\n",
        "attachments": [("OR00000001.pdf", PDF)],
    }
    assert not message.defects
    assert all(not part.defects for part in message.walk())


def test_the_same_notice_gives_the_same_bytes_but_for_its_date():
    first, again = (render_message(outgoing(), MAIL_FROM).data for _ in range(2))

    def undated(data: bytes) -> list[bytes]:
        return [line for line in lines_of(data) if not line.startswith(b"Date: ")]

    assert undated(first) == undated(again)


@pytest.mark.parametrize(
    ("changes", "content_type", "parts"),
    [
        pytest.param({}, "multipart/mixed", ("text", "html", "pdf"), id="all"),
        pytest.param({"attachment": None}, "multipart/alternative", ("text", "html"), id="link"),
        pytest.param({"html": ""}, "multipart/mixed", ("text", "pdf"), id="no-html"),
        pytest.param({"html": "", "attachment": None}, "text/plain", ("text",), id="text-only"),
    ],
)
def test_each_shape_of_message_has_the_parts_it_needs(changes, content_type, parts):
    message = parsed(render_message(outgoing(**changes), MAIL_FROM).data)

    assert message.get_content_type() == content_type
    found = contents(message)
    assert ("text" in parts) == (found["text"] is not None)
    assert ("html" in parts) == (found["html"] is not None)
    assert ("pdf" in parts) == bool(found["attachments"])


@settings(max_examples=150, deadline=None)
@given(subject=texts, text=texts, html=texts, filename=texts)
def test_any_text_reads_back_exactly_on_short_crlf_lines(subject, text, html, filename):
    rendered = render_message(
        outgoing(subject=subject, text=text, html=html, attachment=(filename, PDF)), MAIL_FROM
    )
    message = parsed(rendered.data)

    # RFC 5322's 998 is the hard limit; everything here stays within the 78 it recommends,
    # except a long unbreakable header word, which the stdlib folds as it can.
    assert b"\n" not in rendered.data.replace(b"\r\n", b"")
    assert b"\r" not in rendered.data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in lines_of(rendered.data))
    head, _, body = rendered.data.partition(b"\r\n\r\n")
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))
    assert rendered.data.isascii() or not rendered.recipient.isascii()
    # a subject or a file name never adds a header, whatever it holds
    assert [name for name, _ in message.items()] == [
        "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
    ]  # fmt: skip
    assert str(message["Subject"]) == _single_line(subject)
    found = contents(message)
    assert found["text"] == expected_text(text)
    if html:
        assert found["html"] == expected_text(html)
    [(name, data)] = found["attachments"]
    assert data == PDF
    assert name == (
        _single_line(filename).replace("/", "_").replace("\\", "_").strip(". ") or "factura.pdf"
    )


def test_build_message_is_the_rendered_message_parsed():
    message = build_message(outgoing(), MAIL_FROM)

    assert message["Message-ID"] == message_id("OR00000001:email", MAIL_FROM)
    assert message.get_content_type() == "multipart/mixed"


@settings(max_examples=300, deadline=None)
@given(
    value=st.from_regex(_COMMON_ADDRESS, fullmatch=True)
    | st.emails()
    | st.text(st.sampled_from("ab.-_@+%ăZ9 "), max_size=30)
)
def test_the_quick_check_of_a_usual_address_agrees_with_the_full_parse(value):
    try:
        full = _parse_recipient_fully(value)
    except PermanentDeliveryError:
        full = None
    try:
        quick = parse_recipient(value)
    except PermanentDeliveryError:
        quick = None
    assert quick == full


@pytest.mark.parametrize("value", ["@", "@example.ro", "ana@", "ana@@example.ro", "ana@example"])
def test_an_address_without_both_halves_is_a_permanent_failure_not_a_crash(value):
    with pytest.raises(PermanentDeliveryError, match="recipient"):
        render_message(outgoing(recipient=value), MAIL_FROM)
