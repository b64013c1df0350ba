"""The paper print batch: one merged PDF of a cycle's paper invoices, sorted by postal code, and a
CSV of the mailing data in the same order, for the print house.

Both are deterministic: the same invoices give the same bytes, so a re-run after a crash writes
the same batch again (a no-op in the write-once archive) instead of printing anything twice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from pypdf import PdfReader, PdfWriter

from billing.domain.model import Address
from billing.domain.spreadsheet import spreadsheet_row

CSV_COLUMNS = (
    "sequence", "invoice_number", "customer_id", "name", "street", "postal_code", "city",
    "county", "country", "first_page", "pages",
)  # fmt: skip


@dataclass(frozen=True)
class PaperItem:
    number: str
    customer_id: str
    name: str
    mailing_address: Address
    pdf: bytes


def build_print_batch(items: Sequence[PaperItem]) -> tuple[bytes, bytes]:
    """(merged PDF, mailing CSV), both ordered by postal code, then invoice number."""
    ordered = sorted(items, key=lambda i: (i.mailing_address.postal_code, i.number))
    writer = PdfWriter()
    rows = io.StringIO()
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(CSV_COLUMNS)
    page = 1
    for sequence, item in enumerate(ordered, start=1):
        pages = len(PdfReader(io.BytesIO(item.pdf)).pages)
        writer.append(PdfReader(io.BytesIO(item.pdf)))
        a = item.mailing_address
        # the print house opens this in a spreadsheet: a name must not run as a formula
        table.writerow(
            spreadsheet_row([sequence, item.number, item.customer_id, item.name, a.street,
                             a.postal_code, a.city, a.county, a.country, page, pages])
        )  # fmt: skip
        page += pages
    merged = io.BytesIO()
    writer.write(merged)
    return merged.getvalue(), rows.getvalue().encode("utf-8")
