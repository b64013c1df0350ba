"""Customers the customer's side knows: each invoiced once in the ledger, with an id and a mobile
number no other test uses, so tests can share one ledger (the `shared_ledger` fixture)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

from billing.domain.model import Charge, Customer
from billing.stages.issuing import issue_invoices, register_cycle
from tests.support.factory import CUSTOMER
from tests.support.issue_worker import cycle

SUPPLIER_NAME = "Telecom Exemplu Ștefănești SA"
KEYS_SECRET = b"a test secret of thirty-two bytes!"
_serial = itertools.count(1)


def new_phone() -> str:
    """A Romanian mobile number (E.164) no other test uses."""
    return f"+4079{next(_serial):07d}"


def enrol(engine, month: int = 11, **changes) -> Customer:
    """A new customer (the factory's, with `changes`), invoiced in cycle 2026-<month>."""
    n = next(_serial)
    customer = replace(CUSTOMER, **{"customer_id": f"T{n:07d}", "phone": new_phone(), **changes})
    return invoice(engine, customer, month)


def invoice(engine, customer: Customer, month: int) -> Customer:
    """Invoice `customer` (as the export has them) in cycle 2026-<month>."""
    billed = cycle(month)
    register_cycle(engine, billed)
    charge = Charge(
        customer.customer_id, "Abonament", Decimal("1"), Decimal("10.00"), Decimal("21")
    )
    issue_invoices(engine, billed, [(customer, [charge])], run_id="enrol")
    return customer
