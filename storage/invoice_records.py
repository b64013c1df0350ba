"""Reading issued invoices and their archived documents from the ledger."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from billing.domain.model import (
    CUSTOMER_FIELDS,
    Customer,
    InvoiceLine,
    IssuedInvoice,
    VatLine,
    customer_from_row,
    customer_to_row,
)
from storage.ledger import (
    efactura_documents,
    invoice_documents,
    invoice_lines,
    invoice_vat,
    invoices,
)

# The invoice row keeps the customer's fields under these names where they differ.
LEDGER_COLUMN = {"name": "customer_name", "tax_id": "customer_tax_id"}


def customer_snapshot(customer: Customer) -> dict[str, str]:
    """The customer's columns of an invoice row: who was invoiced, as they were then."""
    return {LEDGER_COLUMN.get(k, k): v for k, v in customer_to_row(customer).items()}


def documents_missing(
    conn: Connection, cycle_id: str, customer_ids: Sequence[str], xml: bool = False
) -> list[tuple[str, bool, bool]]:
    """(number, no PDF yet, no e-Factura XML yet) of the cycle's invoices for these customers
    that miss their PDF, or with `xml` their XML, in number order."""
    no_pdf = invoice_documents.c.number.is_(None)
    no_xml = efactura_documents.c.number.is_(None)
    query = (
        sa.select(invoices.c.number, no_pdf, no_xml)
        .select_from(invoices.outerjoin(invoice_documents).outerjoin(efactura_documents))
        .where(
            invoices.c.cycle_id == cycle_id,
            invoices.c.customer_id.in_(customer_ids),
            sa.or_(no_pdf, no_xml) if xml else no_pdf,
        )
        .order_by(invoices.c.number)
    )
    return [
        (number, bool(pdf), bool(missing) and xml) for number, pdf, missing in conn.execute(query)
    ]


def load_invoices(
    conn: Connection, numbers: Sequence[str], with_lines: bool = True
) -> list[IssuedInvoice]:
    """Whole issued invoices (customer snapshot, lines, VAT summary), in the order of `numbers`.

    `with_lines=False`: without their lines and VAT summary (empty tuples), for what prints
    neither (the e-mail and SMS notices); an invoice has about 22 line rows, so this reads a
    twenty-third of the rows."""
    if not numbers:
        return []
    lines: dict[str, list[InvoiceLine]] = defaultdict(list)
    vats: dict[str, list[VatLine]] = defaultdict(list)
    if with_lines:
        _read_lines(conn, numbers, lines, vats)
    found = {
        row.number: _invoice(row, lines[row.number], vats[row.number])
        for row in conn.execute(sa.select(invoices).where(invoices.c.number.in_(numbers)))
    }
    return [found[n] for n in numbers if n in found]


def _read_lines(conn, numbers, lines, vats) -> None:
    for row in conn.execute(
        sa.select(invoice_lines)
        .where(invoice_lines.c.number.in_(numbers))
        .order_by(invoice_lines.c.number, invoice_lines.c.line_no)
    ):
        lines[row.number].append(
            InvoiceLine(
                line_no=row.line_no, description=row.description, quantity=row.quantity,
                unit_price=row.unit_price, net=row.net, vat_rate=row.vat_rate,
                service_start=row.service_start, service_end=row.service_end,
            )
        )  # fmt: skip
    for row in conn.execute(sa.select(invoice_vat).where(invoice_vat.c.number.in_(numbers))):
        vats[row.number].append(VatLine(rate=row.rate, base=row.base, vat=row.vat))


def _invoice(row, lines: list[InvoiceLine], vats: list[VatLine]) -> IssuedInvoice:
    columns = row._mapping
    customer = customer_from_row({f: columns[LEDGER_COLUMN.get(f, f)] for f in CUSTOMER_FIELDS})
    return IssuedInvoice(
        number=row.number, series=row.series, cycle_id=row.cycle_id, customer=customer,
        issue_date=row.issue_date, due_date=row.due_date, period_start=row.period_start,
        period_end=row.period_end, currency=row.currency, lines=tuple(lines),
        vat=tuple(sorted(vats, key=lambda v: v.rate, reverse=True)),
        net_total=row.net_total, vat_total=row.vat_total, total=row.total,
    )  # fmt: skip
