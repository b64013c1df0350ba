"""The print house's mailing CSV: cells a spreadsheet would run as formulas are made inert, and
Romanian text goes through as it is."""

from __future__ import annotations

import csv
import io

import pytest
from pypdf import PdfWriter

from billing.domain.model import Address
from notifiers.paper import PaperItem, build_print_batch


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
