"""The invoice e-mail as a customer reads it: language, amounts, escaping, link or attachment."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from billing.domain.errors import UnsendableNoticeError
from renderers.messages import render_email, render_sms
from renderers.supplier import load_supplier
from tests.support.factory import customer, line, make_invoice

SUPPLIER = load_supplier()
LINK = "https://facturi.telecom-exemplu.ro/d/OR00000001?sig=a1&exp=2"


def big_invoice(language: str):
    """Total 1.234.567,89 lei: 1.020.304,04 net + 21 % VAT."""
    charges = [line("Echipamente", "1", "1020304.04", "21")]
    invoice = make_invoice(charges, customer=customer(language=language))
    assert invoice.total == Decimal("1234567.89")
    return invoice


@pytest.mark.parametrize(
    ("language", "subject", "wording"),
    [
        pytest.param(
            "ro",
            "Factura OR00000001 de la Telecom Exemplu SA",
            ["Total de plată: 1.234.567,89 lei", "Data scadenței: 21.11.2026"],
            id="ro",
        ),
        pytest.param(
            "en",
            "Your invoice OR00000001 from Telecom Exemplu SA",
            ["Total to pay: 1.234.567,89 lei", "Due date: 21.11.2026"],
            id="en",
        ),
    ],
)
def test_the_notice_speaks_the_customers_language(language, subject, wording):
    rendered_subject, text, html = render_email(big_invoice(language), SUPPLIER)

    assert rendered_subject == subject
    for fragment in [*wording, "OR00000001", "01.10.2026 – 31.10.2026", "Telecom Exemplu SA"]:
        assert fragment in text
    assert "1.234.567,89 lei" in html and "21.11.2026" in html
    assert f'<html lang="{language}">' in html
    assert "Popescu Ana-Maria" in text and "Popescu Ana-Maria" in html


@pytest.mark.parametrize(
    ("language", "attached", "download"),
    [
        pytest.param("ro", "Factura în format PDF este atașată", "descărca", id="ro"),
        pytest.param("en", "The PDF invoice is attached", "Download", id="en"),
    ],
)
def test_the_notice_says_attached_or_gives_the_link(language, attached, download):
    invoice = make_invoice(customer=customer(language=language))

    _, text, html = render_email(invoice, SUPPLIER)
    _, linked_text, linked_html = render_email(invoice, SUPPLIER, LINK)

    assert attached in text and attached in html
    assert LINK not in text and "href" not in html
    assert attached not in linked_text and attached not in linked_html
    assert LINK in linked_text and download in linked_text
    assert f'href="{LINK.replace("&", "&amp;")}"' in linked_html


def test_customer_text_is_escaped_in_html_only():
    name = '<script>x</script> & "Fiii" SRL'
    invoice = make_invoice(customer=customer(name=name))

    _, text, html = render_email(invoice, SUPPLIER)

    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; &#34;Fiii&#34; SRL" in html
    assert name in text


def test_the_subject_is_one_line_whatever_the_supplier_name_holds():
    supplier = replace(SUPPLIER, name="Telecom\r\nBcc: x@y.ro")

    subject, _, _ = render_email(make_invoice(), supplier)

    assert subject == "Factura OR00000001 de la Telecom Bcc: x@y.ro"


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("/relative/path.pdf", id="relative"),
    ],
)
def test_only_web_links_are_accepted(link):
    with pytest.raises(UnsendableNoticeError, match="http"):
        render_email(make_invoice(), SUPPLIER, link)


def test_an_unknown_language_is_refused():
    with pytest.raises(UnsendableNoticeError, match="'de'"):
        render_email(make_invoice(customer=customer(language="de")), SUPPLIER)


@pytest.mark.parametrize("language", ["ro", "en"])
@pytest.mark.parametrize("link", [None, "https://facturi.example.ro/f/OR00000001"])
def test_a_notice_prints_no_line_so_the_notify_step_loads_none(language, link):
    """The notify step reads invoices without their lines and VAT summary
    (`load_invoices(..., with_lines=False)`): the messages must come out the same."""
    full = make_invoice(customer=customer(language=language))
    bare = replace(full, lines=(), vat=())
    assert render_email(bare, SUPPLIER, link) == render_email(full, SUPPLIER, link)
    assert render_sms(bare, SUPPLIER.name, link) == render_sms(full, SUPPLIER.name, link)
