"""The print house's files: a mailing CSV whose cells a spreadsheet would run as formulas are
made inert (Romanian text goes through as it is), and a PDF merged by streaming, in print order,
sharing the objects invoices have in common."""

from __future__ import annotations

import csv
import functools
import io
import tracemalloc

import pytest
from pypdf import PdfReader, PdfWriter

from billing.domain.errors import RenderError
from billing.domain.model import Address
from notifiers import paper
from notifiers.paper import PaperItem, build_print_batch
from renderers.pdf import render_invoice
from renderers.supplier import load_supplier
from tests.support.factory import customer, line, make_invoice


def one_page_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def mailing_rows(name: str, street: str) -> list[dict[str, str]]:
    item = PaperItem(
        number="OR00000001",
        customer_id="C1",
        name=name,
        mailing_address=Address(
            street=street, city="Iași", county="Iași", postal_code="700001", country="RO"
        ),
        read_pdf=one_page_pdf,
    )
    _, mailing = build_print_batch([item])
    return list(csv.DictReader(io.StringIO(mailing.decode("utf-8"), newline="")))


@pytest.mark.parametrize(
    "dangerous",
    [
        pytest.param('=HYPERLINK("http://evil.example","Plătiți aici")', id="equals"),
        pytest.param("@SUM(1)", id="at"),
        pytest.param("+cmd|' /C calc'!A0", id="plus"),
        pytest.param("-2+3", id="minus"),
        pytest.param("\t=1+1", id="tab"),
        pytest.param("\uff1d1+1", id="full-width-equals"),
    ],
)
def test_formula_cells_are_made_inert(dangerous):
    # before: the name and street went to the print house's CSV unchanged
    (row,) = mailing_rows(dangerous, dangerous)
    assert row["name"] == "'" + dangerous and row["street"] == "'" + dangerous
    assert row["sequence"] == "1" and row["pages"] == "1"


def test_romanian_text_round_trips():
    (row,) = mailing_rows("Ștefan Țăran-Îonescu", "Str. Învățătorului nr. 2, bl. A-3")
    assert row["name"] == "Ștefan Țăran-Îonescu"
    assert row["street"] == "Str. Învățătorului nr. 2, bl. A-3"
    assert row["city"] == "Iași"


# --- the merge: streamed, in print order, identical objects shared ---------------------------

SUPPLIER = load_supplier()
NAMES = ("Popescu Ana-Maria", "Ionescu Ștefan", "Țăranu Bogdan", "Zamfir Quentin-Yves")


@functools.cache
def invoice_pdf(n: int) -> bytes:
    """A real invoice (reportlab, a DejaVu subset embedded): four names, so some invoices use
    the same characters in the same order and get byte-identical font subsets."""
    who = customer(name=f"{NAMES[n % len(NAMES)]} {n % 3}")
    return render_invoice(make_invoice(number=f"OR{n:08d}", customer=who), SUPPLIER)


def paper_items(count: int, reads: list[str] | None = None) -> list[PaperItem]:
    def read(n: int) -> bytes:
        if reads is not None:
            reads.append(f"OR{n:08d}")
        return invoice_pdf(n)

    return [
        PaperItem(
            number=f"OR{n:08d}",
            customer_id=f"C{n}",
            name=NAMES[n % len(NAMES)],
            mailing_address=Address(
                "Str. Mare nr. 1", "Iași", "Iași", f"{700_000 + (n * 37) % 90:06d}"
            ),
            read_pdf=functools.partial(read, n),
        )
        for n in range(1, count + 1)
    ]


def font_files(reader: PdfReader) -> dict[bytes, int]:
    """Each embedded font program's bytes, with how many pages use that object."""
    found: dict[bytes, int] = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            program = font.get_object()["/FontDescriptor"]["/FontFile2"].get_object()
            found[program.get_data()] = found.get(program.get_data(), 0) + 1
    return found


def test_the_merged_file_holds_each_invoice_in_print_order_and_shares_identical_fonts():
    reads: list[str] = []
    items = paper_items(12, reads)
    pdf, mailing = build_print_batch(items)
    rows = list(csv.DictReader(io.StringIO(mailing.decode("utf-8"))))
    merged = PdfReader(io.BytesIO(pdf), strict=True)

    assert reads == [r["invoice_number"] for r in rows]  # each PDF read once, in print order
    assert [r["postal_code"] for r in rows] == sorted(r["postal_code"] for r in rows)
    assert len(merged.pages) == sum(int(r["pages"]) for r in rows)
    for row in rows:  # every page is the invoice's own, where the CSV says
        source = PdfReader(io.BytesIO(invoice_pdf(int(row["invoice_number"][2:])))).pages
        first = int(row["first_page"]) - 1
        for offset, page in enumerate(source):
            assert merged.pages[first + offset].extract_text() == page.extract_text()

    sources = [font_files(PdfReader(io.BytesIO(invoice_pdf(n)))) for n in range(1, 13)]
    distinct = {program for fonts in sources for program in fonts}
    assert len(distinct) < sum(len(fonts) for fonts in sources)  # some subsets coincide
    # each distinct font program is embedded once, however many invoices use it
    objects = {
        font.get_object()["/FontDescriptor"]["/FontFile2"].indirect_reference.idnum
        for page in merged.pages
        for font in page["/Resources"]["/Font"].values()
    }
    assert len(objects) == len(distinct) and set(font_files(merged)) == distinct
    assert len(pdf) < sum(len(invoice_pdf(n)) for n in range(1, 13))

    assert build_print_batch(list(reversed(paper_items(12)))) == (pdf, mailing)  # deterministic


def test_objects_recognised_by_their_source_bytes_are_what_parsing_them_would_give(monkeypatch):
    # The merge skips parsing an object whose source bytes and references it has copied before;
    # the file must be byte for byte what parsing every object gives. One- and three-page
    # invoices, numbered differently in their sources; names outside the common character set
    # give subsets of their own, whose font descriptors read the same but for the font file.
    long = [line(f"Apel național {n:03d}", "1", "0.50") for n in range(70)]
    names = ("Lungu Ilie", "Łukasz Ødegård", "Παπαδόπουλος Νίκος", "Иванов Пётр", "Lungu Ilie")
    items = [*paper_items(8)] + [
        PaperItem(f"OR9{n:07d}", f"C9{n}", name, Address("Str. Lungă 9", "Iași", "Iași",
                  "700009"), functools.partial(render_invoice, make_invoice(long if n % 2 else
                  None, number=f"OR9{n:07d}", customer=customer(name=name)), SUPPLIER))
        for n, name in enumerate(names)
    ]  # fmt: skip
    assert len(PdfReader(io.BytesIO(items[-2].read_pdf())).pages) > 2
    recognised = []
    source_key = paper._StreamingMerge._source_key  # noqa: SLF001

    def counting(self, ref, copied):
        key = source_key(self, ref, copied)
        recognised.append(key is not None and key in self.shared_sources)
        return key

    monkeypatch.setattr(paper._StreamingMerge, "_source_key", counting)  # noqa: SLF001
    fast = build_print_batch(items)
    assert sum(recognised) > len(items)  # the fonts of most invoices were not parsed
    monkeypatch.setattr(paper._StreamingMerge, "_source_key", lambda self, ref, copied: None)  # noqa: SLF001
    assert build_print_batch(items) == fast


def test_the_merge_holds_one_source_pdf_not_every_one():
    # pypdf's writer kept every appended invoice's objects until it wrote the file: about six
    # times each PDF's size; streamed, a file grows by what is written (about one PDF's size)
    def peak(count: int) -> int:
        items = paper_items(count)
        tracemalloc.start()
        try:
            build_print_batch(items)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    build_print_batch(paper_items(2))  # imports and caches
    average = sum(len(invoice_pdf(n)) for n in range(1, 41)) / 40
    per_invoice = (peak(40) - peak(10)) / 30
    assert per_invoice < 2.5 * average, (per_invoice, average)


def test_a_pdf_that_cannot_be_merged_fails_naming_its_invoice():
    # a retry would read the same bytes: RenderError fails the task at once
    (item,) = paper_items(1)
    broken = PaperItem(
        item.number, item.customer_id, item.name, item.mailing_address, lambda: b"%PDF-1.4 cut"
    )
    with pytest.raises(RenderError, match="invoice OR00000001: its PDF cannot be merged"):
        build_print_batch([broken])
