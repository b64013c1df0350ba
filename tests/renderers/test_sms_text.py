"""The SMS text (renderers.messages.render_sms): one GSM-7 segment in the customer's language,
the facts never cut, whatever the supplier's name or the amount."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.errors import UnsendableNoticeError
from billing.domain.gsm import segments, septets, transliterate
from renderers.formats import format_amount
from renderers.messages import render_sms
from tests.support.factory import customer, line, make_invoice

SUPPLIER = "Telecom Exemplu Ștefănești S.A."
LONG_SUPPLIER = (
    "Societatea Națională de Telecomunicații și Servicii Digitale Integrate "
    "Exemplu din Țara Românească S.A."
)
ONE_SEGMENT = ("GSM-7", 1)


@pytest.mark.parametrize(
    ("language", "name", "price", "expected"),
    [
        pytest.param(
            "ro",
            "Ștefănescu Țurcanu Ioana",
            "10.00",
            "Telecom Exemplu Stefanesti S.A.: factura OR00000001 de 12,10 lei, "
            "scadenta 21.11.2026. Detalii in contul tau.",
            id="ro",
        ),
        pytest.param(
            "en",
            "Şerban Ţepeş Ăncuţa",
            "1000.00",
            "Telecom Exemplu Stefanesti S.A.: invoice OR00000001 of 1.210,00 lei, "
            "due 21.11.2026. Details in your account.",
            id="en-thousands",
        ),
    ],
)
def test_render_sms_is_one_gsm7_segment_in_the_customers_language(language, name, price, expected):
    invoice = make_invoice(
        [line("Abonament", price=price)], customer=customer(name=name, language=language)
    )

    text = render_sms(invoice, SUPPLIER)

    assert text == expected
    assert segments(text) == ONE_SEGMENT


def test_a_long_supplier_name_is_shortened_never_the_facts():
    invoice = make_invoice([line("Abonament", price="198.30")])

    text = render_sms(invoice, LONG_SUPPLIER)

    assert segments(text) == ONE_SEGMENT
    assert septets(text) <= 160
    assert text.startswith("Societatea Nationala de Telecomunicatii")
    assert "Romaneasca S.A." not in text  # cut at a word boundary
    assert "factura OR00000001 de 239,94 lei, scadenta 21.11.2026." in text


@pytest.mark.parametrize(
    ("changes", "supplier", "message"),
    [
        pytest.param({"number": "OR" + "9" * 150}, SUPPLIER, "no room", id="number-too-long"),
        pytest.param({}, " \u0301 ", "supplier name is empty", id="empty-supplier"),
        pytest.param({"currency": "EUR"}, SUPPLIER, "currency", id="not-lei"),
        pytest.param({"customer": customer(language="de")}, SUPPLIER, "language", id="language"),
    ],
)
def test_render_sms_refuses_what_cannot_be_one_segment(changes, supplier, message):
    invoice = replace(make_invoice(), **changes)
    with pytest.raises(UnsendableNoticeError, match=message):
        render_sms(invoice, supplier)


@given(
    supplier=st.text(min_size=1).filter(lambda name: transliterate(name).strip()),
    amount=st.decimals(min_value=-(10**9), max_value=10**9, places=2),
    language=st.sampled_from(["ro", "en"]),
)
def test_any_supplier_name_and_amount_render_one_segment(supplier, amount, language):
    invoice = replace(make_invoice(), total=amount, customer=customer(language=language))

    text = render_sms(invoice, supplier)

    assert segments(text) == ONE_SEGMENT
    assert "OR00000001" in text
    assert f" {format_amount(amount)} lei" in text
    assert "21.11.2026" in text
