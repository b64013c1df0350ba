"""Reading issued invoices and their archived documents from the ledger."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from billing.model import Address, Customer, InvoiceLine, IssuedInvoice, VatLine
from storage.ledger import invoice_documents, invoice_lines, invoice_vat, invoices


def numbers_without_document(
    conn: Connection, cycle_id: str, customer_ids: Sequence[str]
) -> list[str]:
    """Invoice numbers of the cycle, for these customers, that have no archived document yet."""
    query = (
        sa.select(invoices.c.number)
        .select_from(invoices.outerjoin(invoice_documents))
        .where(
            invoices.c.cycle_id == cycle_id,
            invoices.c.customer_id.in_(customer_ids),
            invoice_documents.c.number.is_(None),
        )
        .order_by(invoices.c.number)
    )
    return list(conn.execute(query).scalars())


def load_invoices(conn: Connection, numbers: Sequence[str]) -> list[IssuedInvoice]:
    """Whole issued invoices (customer snapshot, lines, VAT summary), in the order of `numbers`."""
    if not numbers:
        return []
    lines: dict[str, list[InvoiceLine]] = defaultdict(list)
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
    vats: dict[str, list[VatLine]] = defaultdict(list)
    for row in conn.execute(sa.select(invoice_vat).where(invoice_vat.c.number.in_(numbers))):
        vats[row.number].append(VatLine(rate=row.rate, base=row.base, vat=row.vat))
    found = {
        row.number: _invoice(row, lines[row.number], vats[row.number])
        for row in conn.execute(sa.select(invoices).where(invoices.c.number.in_(numbers)))
    }
    return [found[n] for n in numbers if n in found]


def _invoice(row, lines: list[InvoiceLine], vats: list[VatLine]) -> IssuedInvoice:
    paper = None
    if row.paper_street:
        paper = Address(
            row.paper_street, row.paper_city, row.paper_county, row.paper_postal_code, "RO"
        )
    customer = Customer(
        customer_id=row.customer_id, name=row.customer_name, tax_id=row.customer_tax_id,
        address=Address(row.street, row.city, row.county, row.postal_code, row.country),
        phone=row.phone, email=row.email, language=row.language, delivery=row.delivery,
        notify=row.notify, paper_address=paper,
        contact_flags=tuple(f for f in row.contact_flags.split(",") if f),
    )  # fmt: skip
    return IssuedInvoice(
        number=row.number, series=row.series, cycle_id=row.cycle_id, customer=customer,
        issue_date=row.issue_date, due_date=row.due_date, period_start=row.period_start,
        period_end=row.period_end, currency=row.currency, lines=tuple(lines),
        vat=tuple(sorted(vats, key=lambda v: v.rate, reverse=True)),
        net_total=row.net_total, vat_total=row.vat_total, total=row.total,
    )  # fmt: skip
