"""The invoice PDF as a customer, an auditor and a PDF reader see it: text extracted with pypdf."""

from __future__ import annotations

import hashlib
import io
import itertools
import socket
import subprocess
import sys
from dataclasses import fields, replace

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain.model import Supplier
from billing.domain.validation import normalize_text
from renderers.blocks import paginate
from renderers.fonts import common, plain_reportlab, printable, undrawable
from renderers.labels import LABELS
from renderers.pdf import RenderError, render_invoice
from renderers.sample_page import sample_invoice
from renderers.supplier import load_supplier
from tests.support.factory import customer, line, make_invoice
from tests.support.paths import REPO

SUPPLIER = load_supplier()
CEDILLA_FORMS = "şţŞŢ"


def page_texts(pdf: bytes) -> list[str]:
    """Each page's text, whitespace folded (wrapped lines come back joined by one space)."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return [" ".join(page.extract_text().split()) for page in reader.pages]


def text_of(pdf: bytes) -> str:
    return " ".join(page_texts(pdf))


@pytest.fixture(scope="module")
def sample_text() -> str:
    return text_of(render_invoice(sample_invoice(), SUPPLIER))


@pytest.mark.parametrize(
    "expected",
    [
        pytest.param("Telecom Exemplu SA", id="supplier name"),
        pytest.param("CUI: RO18547290", id="supplier CUI"),
        pytest.param("Reg. Com.: J40/12345/2004", id="trade register"),
        pytest.param("Bd. Ion Mihalache nr. 15–17, Sector 1, 011171 București", id="address"),
        pytest.param("Capital social: 25.000.000 lei", id="share capital"),
        pytest.param("RO16BTRLRONCRT0123456701", id="IBAN"),
        pytest.param("Banca Transilvania, Sucursala Piața Romană", id="bank"),
        pytest.param("FACTURĂ", id="title"),
        pytest.param("Seria OR nr. 00012345", id="series and number"),
        pytest.param("OR00012345", id="full number"),
        pytest.param("Data emiterii 01.11.2026", id="issue date"),
        pytest.param("Perioada 01.10.2026 – 31.10.2026", id="billing period"),
        pytest.param("Data scadenței 21.11.2026", id="due date"),
        pytest.param("Ștefănescu Ioana-Mădălina", id="customer name, cedilla input"),
        pytest.param("CNP: 2850312400129", id="customer tax id"),
        pytest.param("Str. Aviator Ștefan Sănătescu nr. 44, bl. A2, sc. 1, ap. 12", id="street"),
        pytest.param("011478 București", id="postal code and city"),
        pytest.param("Sector 1, România", id="county and country"),
        pytest.param("5 Trafic de date mobile suplimentar (GB) 3,275 4,99 16,34 21%", id="qty"),
        pytest.param("4 Convorbiri naționale peste abonament (minute) 42 0,0450 1,89", id="price"),
        pytest.param("Internet 1 -3,99 -3,99 21%", id="discount"),
        pytest.param("Perioada: 14.10.2026 – 20.10.2026", id="line period"),
        pytest.param("21% 160,64 33,73", id="base and VAT at 21%"),
        pytest.param("11% 29,80 3,28", id="base and VAT at 11%"),
        pytest.param("0% 12,50 0,00", id="base and VAT at 0%"),
        pytest.param("Cota TVA 0%: Scutit de TVA conform art. 292 din Codul fiscal", id="ground"),
        pytest.param("Total fără TVA 202,94 lei", id="total without VAT"),
        pytest.param("Total TVA 37,01 lei", id="total VAT"),
        pytest.param("Total de plată 239,95 lei", id="total to pay"),
        pytest.param("Referință plată OR00012345", id="payment reference"),
        pytest.param("Suma de plată 239,95 lei", id="payment amount"),
        pytest.param("Pagina 1 din 1", id="page number"),
    ],
)
def test_every_mandatory_field_is_printed(sample_text, expected):
    assert expected in sample_text


def test_every_line_description_is_printed_with_comma_below_letters(sample_text):
    for item in sample_invoice().lines:
        expected = item.description.replace("ţ", "ț")  # line 4 is typed with a cedilla ţ
        assert expected in sample_text
    assert not set(CEDILLA_FORMS) & set(sample_text)
    assert {"\u0218", "\u0219", "\u021a", "\u021b"} <= set(sample_text)  # Ș ș Ț ț


def test_the_exemption_ground_is_printed_once_and_only_for_exempt_lines():
    exempt = text_of(
        render_invoice(make_invoice([line("A", rate="0"), line("B", rate="0")]), SUPPLIER)
    )
    taxed = text_of(render_invoice(make_invoice([line("A")]), SUPPLIER))
    assert exempt.count("Scutit de TVA conform art. 292 din Codul fiscal") == 1
    assert "Scutit" not in taxed


def test_a_plain_supplier_gets_the_statutory_exemption_ground():
    plain = Supplier(**{f.name: getattr(SUPPLIER, f.name) for f in fields(Supplier)})
    text = text_of(render_invoice(make_invoice([line("A", rate="0")]), plain))
    assert "Cota TVA 0%: Scutit de TVA conform art. 292 din Codul fiscal" in text


def test_an_english_customer_gets_english_labels_with_the_romanian_legal_terms():
    text = text_of(render_invoice(sample_invoice("en"), SUPPLIER))
    for expected in (
        "INVOICE (FACTURĂ)",
        "Series OR no. 00012345",
        "Issue date 01.11.2026",
        "Billing period 01.10.2026 – 31.10.2026",
        "Due date 21.11.2026",
        "Total excl. VAT 202,94 lei",
        "Total VAT (TVA) 37,01 lei",
        "Total to pay 239,95 lei",
        "VAT exempt under art. 292 of the Romanian Fiscal Code (scutit de TVA)",
        "CNP: 2850312400129",
        "Sector 1, Romania",
        "Page 1 of 1",
    ):
        assert expected in text
    assert "Total de plată" not in text


@pytest.mark.parametrize(
    ("tax_id", "expected"),
    [
        pytest.param("1900715400010", "CNP: 1900715400010", id="person"),
        pytest.param("RO18547290", "CUI: RO18547290", id="company"),
    ],
)
def test_the_customer_tax_id_is_labelled_by_kind(tax_id, expected):
    invoice = make_invoice(customer=customer(tax_id=tax_id, name="Client Test"))
    assert f"Client Test {expected}" in text_of(render_invoice(invoice, SUPPLIER))


def test_no_tax_id_line_when_the_customer_has_none():
    text = text_of(render_invoice(make_invoice(customer=customer(tax_id="")), SUPPLIER))
    assert "CNP" not in text
    assert "Popescu Ana-Maria Cod client: C0000007" in text


def test_a_60_line_invoice_flows_over_pages_without_losing_a_line():
    descriptions = [f"Serviciu #{n:02d}# apeluri și date" for n in range(1, 61)]
    invoice = make_invoice([line(d, "2", "1.50") for d in descriptions], number="OR00000060")
    pages = page_texts(render_invoice(invoice, SUPPLIER))

    assert len(pages) == 3
    for number, text in enumerate(pages, start=1):
        assert f"Pagina {number} din 3" in text
        for repeated in ("Telecom Exemplu SA", "OR00000060", "Popescu Ana-Maria", "Cant."):
            assert repeated in text
    everything = " ".join(pages)
    for description in descriptions:
        assert everything.count(description) == 1
    rows = [[d for d in descriptions if d in text] for text in pages]
    assert [d for page in rows for d in page] == descriptions  # in order, no page empty
    assert all(rows)
    for text in pages[:-1]:
        assert "Total de plată" not in text
        assert "Continuare pe pagina următoare" in text
    assert "Total de plată 217,80 lei" in pages[-1]  # 60 x 3,00 + 21 %
    assert "Continuare" not in pages[-1]


def test_markup_in_customer_data_is_printed_literally_and_fetches_nothing():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.3)
        port = server.getsockname()[1]
        image = f'<img src="http://127.0.0.1:{port}/x"/>'
        invoice = make_invoice(
            [line("<b>bold</b> & <i>more</i>")], customer=customer(name=image, tax_id="")
        )
        text = text_of(render_invoice(invoice, SUPPLIER))
        with pytest.raises(TimeoutError):
            server.accept()
    assert image in text
    assert "<b>bold</b> & <i>more</i>" in text


def fresh_process_sample_sha256() -> str:
    """The sha256 of the sample invoice as a new process renders it first."""
    script = (
        "import hashlib, sys\n"
        "from renderers.pdf import render_invoice\n"
        "from renderers.sample_page import sample_invoice\n"
        "from renderers.supplier import load_supplier\n"
        "pdf = render_invoice(sample_invoice(), load_supplier())\n"
        "sys.stdout.write(hashlib.sha256(pdf).hexdigest())\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    return child.stdout


def test_the_same_invoice_renders_to_the_same_bytes_in_any_process():
    first = render_invoice(sample_invoice(), SUPPLIER)
    assert render_invoice(sample_invoice(), SUPPLIER) == first
    assert fresh_process_sample_sha256() == hashlib.sha256(first).hexdigest()


# Greek and Cyrillic letters: with the characters every subset starts with, more than one
# 256-code subset holds, so this invoice's text spans two subsets.
MANY_LETTERS = "".join(
    chr(c) for c in [*range(0x391, 0x3A2), *range(0x3A3, 0x3CA), *range(0x400, 0x460)]
)


def many_letters_invoice():
    chunks = [MANY_LETTERS[i : i + 40] for i in range(0, len(MANY_LETTERS), 40)]
    return make_invoice([line(chunk) for chunk in chunks], customer=customer(name="Jürgen Łukasz"))


def test_text_beyond_the_common_characters_prints_in_a_second_subset():
    assert len(MANY_LETTERS) + len(common()) > 256 and undrawable(MANY_LETTERS) is None
    pdf = render_invoice(many_letters_invoice(), SUPPLIER)
    text = text_of(pdf)
    assert "Jürgen Łukasz" in text
    for start in range(0, len(MANY_LETTERS), 40):
        assert MANY_LETTERS[start : start + 40] in text
    assert set(MANY_LETTERS) <= set(text)
    assert b"/FontFile2" in pdf and pdf.count(b"/Type /FontDescriptor") >= 2  # two subsets


def test_what_a_process_rendered_before_never_changes_an_invoices_bytes():
    """The per-process caches (encoded texts, subset font programs) never leak between
    documents: after invoices with other characters, the sample has the bytes of a fresh
    process's first render."""
    fresh = fresh_process_sample_sha256()
    for invoice in (many_letters_invoice(), make_invoice(customer=customer(name="Zoë Öz"))):
        render_invoice(invoice, SUPPLIER)
        assert hashlib.sha256(render_invoice(sample_invoice(), SUPPLIER)).hexdigest() == fresh
        assert render_invoice(invoice, SUPPLIER) == render_invoice(invoice, SUPPLIER)


def test_the_per_subset_caches_write_the_bytes_reportlab_writes():
    """Font programs, Widths arrays and ToUnicode CMaps come from per-process caches; with the
    caches off (reportlab building every one) each invoice has the same bytes."""
    invoices = (
        sample_invoice(),
        many_letters_invoice(),
        make_invoice(customer=customer(name="Zoë")),
    )
    cached = [render_invoice(invoice, SUPPLIER) for invoice in invoices]
    with plain_reportlab():
        assert [render_invoice(invoice, SUPPLIER) for invoice in invoices] == cached
    assert [render_invoice(invoice, SUPPLIER) for invoice in invoices] == cached


def test_the_reference_invoice_is_one_page_under_30_kb():
    pdf = render_invoice(sample_invoice(), SUPPLIER)
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 1
    assert len(pdf) < 30_000


def test_metadata_comes_from_the_invoice():
    reader = pypdf.PdfReader(io.BytesIO(render_invoice(sample_invoice(), SUPPLIER)))
    assert reader.metadata.title == "FACTURĂ OR00012345"
    assert reader.metadata.author == "Telecom Exemplu SA"
    assert reader.metadata.subject == "Ștefănescu Ioana-Mădălina, 01.10.2026 – 31.10.2026"


@pytest.mark.parametrize(
    ("invoice", "expected"),
    [
        pytest.param(
            make_invoice([line("Abonament"), line("Abonament 🚀 Nelimitat")]),
            "Abonament \ufffd Nelimitat",
            id="emoji in a description",
        ),
        pytest.param(
            make_invoice(customer=customer(name="Ana 📱")), "Ana \ufffd", id="emoji in the name"
        ),
        pytest.param(
            make_invoice(customer=customer(name="Li 𠀀")), "Li \ufffd", id="CJK extension B"
        ),
        pytest.param(
            make_invoice(customer=customer(address=replace(customer().address, city="Iași\x07"))),
            "Iași\ufffd",
            id="control character",
        ),
        pytest.param(
            make_invoice(customer=customer(name="Familia 👨\u200d👩\u200d👧 Pop")),
            "Familia \ufffd\ufffd\ufffd Pop",
            id="zero-width joiners left out",
        ),
    ],
)
def test_a_character_the_font_cannot_draw_prints_as_a_visible_replacement(invoice, expected):
    pdf = render_invoice(invoice, SUPPLIER)
    assert expected in text_of(pdf)
    assert render_invoice(invoice, SUPPLIER) == pdf  # still deterministic


def test_an_emoji_name_is_printed_with_the_replacement_and_kept_in_the_metadata_as_printed():
    pdf = render_invoice(make_invoice(customer=customer(name="Ion 🚀 Popescu")), SUPPLIER)
    text = text_of(pdf)
    assert "Ion \ufffd Popescu" in text and "🚀" not in text
    assert pypdf.PdfReader(io.BytesIO(pdf)).metadata.subject.startswith("Ion \ufffd Popescu, ")


def test_bidirectional_controls_never_reach_the_pdf():
    spoof = "Ana \u202eugiM\u202c Pop\u200fescu\u2066x\u2069\u061c"
    text = text_of(render_invoice(make_invoice(customer=customer(name=spoof)), SUPPLIER))
    assert "Ana ugiM Popescux" in text
    assert not set(text) & set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2069")


@pytest.mark.parametrize(
    "name", ["Ștefănescu Țurcanu Îonuț-Mădălin", "ȘȚĂÂÎ șțăâî", "Mărțișor din Râșnov SRL"]
)
def test_a_romanian_name_with_comma_below_letters_prints_unchanged(name):
    assert undrawable(name) is None and printable(name) == name
    text = text_of(render_invoice(make_invoice(customer=customer(name=name)), SUPPLIER))
    assert name in text and "\ufffd" not in text


def test_a_description_longer_than_a_page_is_a_render_error_naming_the_field():
    with pytest.raises(RenderError, match="line 1 description: too long to print"):
        render_invoice(make_invoice([line("Abonament " * 300)]), SUPPLIER)


def test_an_unknown_language_or_currency_is_a_render_error():
    with pytest.raises(RenderError, match="customer language: 'de'"):
        render_invoice(make_invoice(customer=customer(language="de")), SUPPLIER)
    with pytest.raises(RenderError, match="currency: 'EUR'"):
        render_invoice(replace(make_invoice(), currency="EUR"), SUPPLIER)


def test_every_label_can_be_drawn():
    for labels in LABELS.values():
        for value in labels.__dataclass_fields__:
            texts = getattr(labels, value)
            for text in texts if isinstance(texts, tuple) else (texts,):
                assert undrawable(text) is None, (value, text)


@pytest.mark.parametrize(
    ("heights", "first", "others", "closing", "expected"),
    [
        pytest.param([10] * 5, 100, 100, 30, [range(0, 5)], id="one page"),
        pytest.param([10] * 12, 100, 150, 30, [range(0, 8), range(8, 12)], id="two pages"),
        pytest.param([10] * 8, 100, 150, 40, [range(0, 7), range(7, 8)], id="closing moves a row"),
        pytest.param([], 100, 150, 40, [range(0, 0)], id="no lines"),
    ],
)
def test_paginate_keeps_every_row_once_and_the_closing_part_on_the_last_page(
    heights, first, others, closing, expected
):
    assert paginate(heights, first, others, continued=20, closing=closing) == expected


@pytest.mark.parametrize("language", ["ro", "en"])
def test_no_two_texts_overlap_and_all_stay_on_the_page(language):
    from renderers.fonts import text_width
    from renderers.pdf import LEFT, PAGE_HEIGHT, RIGHT, _compose, _layout

    descriptions = [f"Serviciu {n} " + "cu descriere lungă " * (n % 4) for n in range(40)]
    long_name = "Societatea Comercială de Distribuție și Servicii Tehnice Integrate Ardealul SRL"
    address = replace(customer().address, street="Calea Victoriei nr. 155, bl. D1, " * 3)
    crowded = customer(name=long_name * 2, address=address, language=language)
    for invoice in (
        sample_invoice(language),
        make_invoice(
            [line(d, rate="0" if n % 9 == 0 else "21") for n, d in enumerate(descriptions)],
            customer=crowded,
        ),
    ):
        for page in _layout(_compose(invoice, SUPPLIER, LABELS[language])):
            texts = sorted(
                (round(top - dy, 2), x, x + text_width(value, style.size), value)
                for block, top in page
                for x, dy, value, style in block.texts
            )
            for (y1, _, end, first), (y2, start, _, second) in itertools.pairwise(texts):
                assert y1 != y2 or end <= start, f"{first!r} overlaps {second!r}"
            for y, start, end, value in texts:
                assert LEFT <= start and end <= RIGHT and 0 < y < PAGE_HEIGHT, value


@settings(max_examples=30, deadline=None)
@given(
    st.text(
        st.characters(
            min_codepoint=0x21, max_codepoint=0x24F, categories=("L", "N", "P", "S", "Zs")
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_latin_description_prints_with_replacements_for_what_the_font_lacks(description):
    text = text_of(render_invoice(make_invoice([line(description)]), SUPPLIER))
    assert " ".join(printable(normalize_text(description)).split()) in text
