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


# --- the link to the self-service page (INVOICES_PORTAL_URL)

PORTAL = "https://contul.telecom-exemplu.ro"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        pytest.param(
            "ro",
            "Telecom Exemplu Stefanesti S.A.: factura OR00000001 de 12,10 lei, "
            "scadenta 21.11.2026. Vezi factura: https://contul.telecom-exemplu.ro",
            id="ro",
        ),
        pytest.param(
            "en",
            "Telecom Exemplu Stefanesti S.A.: invoice OR00000001 of 12,10 lei, "
            "due 21.11.2026. See it at https://contul.telecom-exemplu.ro",
            id="en",
        ),
    ],
)
def test_the_sms_links_to_the_page_in_the_customers_language(language, expected):
    # diacritics in the customer's and the supplier's names: the customer's never shows, the
    # supplier's is transliterated, and the text stays GSM-7
    invoice = make_invoice(
        [line("Abonament")], customer=customer(name="Țăranu Ștefan-Ăndrei", language=language)
    )

    text = render_sms(invoice, SUPPLIER, PORTAL)

    assert text == expected
    assert segments(text) == ONE_SEGMENT


@pytest.mark.parametrize("language", ["ro", "en"])
def test_a_long_supplier_name_gives_way_to_the_link(language):
    invoice = make_invoice(customer=customer(language=language))

    text = render_sms(invoice, LONG_SUPPLIER, PORTAL)

    assert segments(text) == ONE_SEGMENT
    assert text.endswith(f" {PORTAL}")  # whole, and last
    assert text.startswith("Societatea Nationala de Telecomunicatii")
    assert "Romaneasca" not in text
    assert "OR00000001" in text and "12,10 lei" in text and "21.11.2026" in text


@pytest.mark.parametrize("language", ["ro", "en"])
@pytest.mark.parametrize(
    ("supplier", "link"),
    [
        pytest.param(SUPPLIER, PORTAL + "/" + "f" * 90, id="long-url"),
        pytest.param(LONG_SUPPLIER, PORTAL + "/" + "f" * 90, id="long-url-long-name"),
        pytest.param(SUPPLIER, "https://facturi.exemplu.ro/contul-meu/ă", id="not-gsm7"),
        pytest.param(SUPPLIER, "https://facturi.exemplu.ro/a b", id="a-space"),
    ],
)
def test_a_link_that_cannot_go_whole_in_one_segment_is_left_out(supplier, link, language):
    invoice = make_invoice(customer=customer(language=language))

    text = render_sms(invoice, supplier, link)

    assert text == render_sms(invoice, supplier)  # the notice as without a portal address
    assert segments(text) == ONE_SEGMENT


def test_the_supplier_name_shortens_to_its_first_word_before_the_link_goes():
    invoice = make_invoice()  # ro: 59 septets left for the link after the whole supplier name
    base = render_sms(invoice, SUPPLIER, PORTAL)
    room = 160 - len(base) + len(PORTAL)
    whole = PORTAL + "/" + "a" * (room - len(PORTAL) - 1)
    shortest = whole + "b" * (len(SUPPLIER) - len("Telecom"))

    assert render_sms(invoice, SUPPLIER, whole).startswith(f"{transliterate(SUPPLIER)}: ")
    text = render_sms(invoice, SUPPLIER, shortest)
    assert text.startswith("Telecom: factura") and text.endswith(shortest)
    assert len(text) == 160 and segments(text) == ONE_SEGMENT
    assert render_sms(invoice, SUPPLIER, shortest + "c") == render_sms(invoice, SUPPLIER)


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("/relative/path", id="relative"),
        pytest.param("ftp://facturi.exemplu.ro", id="ftp"),
    ],
)
def test_only_web_links_go_in_an_sms(link):
    with pytest.raises(UnsendableNoticeError, match="http"):
        render_sms(make_invoice(), SUPPLIER, link)


@given(
    supplier=st.text(min_size=1).filter(lambda name: transliterate(name).strip()),
    amount=st.decimals(min_value=-(10**9), max_value=10**9, places=2),
    language=st.sampled_from(["ro", "en"]),
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/?=&~%", max_size=120),
)
def test_any_link_goes_whole_or_not_at_all_in_one_segment(supplier, amount, language, path):
    invoice = replace(make_invoice(), total=amount, customer=customer(language=language))
    link = f"https://contul.exemplu.ro/{path}"

    text = render_sms(invoice, supplier, link)

    assert segments(text) == ONE_SEGMENT
    assert text.endswith(f" {link}") or text == render_sms(invoice, supplier)
    assert "OR00000001" in text and f" {format_amount(amount)} lei" in text
