"""Issued invoices for the renderer tests, with totals computed as in contract 2."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from billing.domain.model import Address, Customer, InvoiceLine, IssuedInvoice, VatLine
from billing.domain.money import compute_totals, line_net

CUSTOMER = Customer(
    customer_id="C0000007",
    name="Popescu Ana-Maria",
    tax_id="1900715400010",
    address=Address(
        street="Str. Mihail Kogălniceanu nr. 3, ap. 4",
        city="Iași",
        county="Iași",
        postal_code="700259",
    ),
    phone="+40722000001",
    email="ana@example.ro",
    language="ro",
    delivery="electronic",
    notify="email",
)


def customer(**changes) -> Customer:
    """The test customer with some fields changed (name=..., language=..., tax_id=...)."""
    return replace(CUSTOMER, **changes)


def line(description: str, quantity: str = "1", price: str = "10.00", rate: str = "21", **kw):
    """A charge as (description, quantity, unit price, VAT rate, extra InvoiceLine fields)."""
    return description, quantity, price, rate, kw


def make_invoice(
    lines: list[tuple] | None = None,
    *,
    customer: Customer = CUSTOMER,
    number: str = "OR00000001",
) -> IssuedInvoice:
    """An issued invoice for the period 01.10.2026 - 31.10.2026, issued 01.11.2026."""
    charges = lines if lines is not None else [line("Abonament Mobil 10")]
    invoice_lines = tuple(
        InvoiceLine(
            line_no=number,
            description=description,
            quantity=Decimal(quantity),
            unit_price=Decimal(price),
            net=line_net(Decimal(quantity), Decimal(price)),
            vat_rate=Decimal(rate),
            **extra,
        )
        for number, (description, quantity, price, rate, extra) in enumerate(charges, start=1)
    )
    totals = compute_totals((item.net, item.vat_rate) for item in invoice_lines)
    return IssuedInvoice(
        number=number,
        series="OR",
        cycle_id="2026-11",
        customer=customer,
        issue_date=date(2026, 11, 1),
        due_date=date(2026, 11, 21),
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        currency="RON",
        lines=invoice_lines,
        vat=tuple(VatLine(rate=s.rate, base=s.base, vat=s.vat) for s in totals.by_rate),
        net_total=totals.net,
        vat_total=totals.vat,
        total=totals.gross,
    )
