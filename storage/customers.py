"""Who a phone number belongs to, and how a customer stands now, read from the ledger.

The ledger knows a customer through the snapshots on their invoices; the newest one holds the
contacts and the address the billing export last sent. A customer's current preference is that
snapshot with the open change (storage.preferences) over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from billing.domain.model import CUSTOMER_FIELDS, Customer, customer_from_row
from billing.domain.preferences import Preference, apply_preference, preference_of
from storage.invoice_records import LEDGER_COLUMN
from storage.ledger import invoices
from storage.preferences import open_overrides


@dataclass(frozen=True)
class Standing:
    """A customer as the page shows them: the newest snapshot, the preference in force for the
    next cycle, and whether that preference is a change the billing export has yet to carry."""

    customer: Customer
    preference: Preference
    pending_change: bool


def customers_by_phone(conn: Connection, phone: str) -> list[str]:
    """Ids of the customers whose newest invoice carries `phone` (E.164), sorted.

    A number that moved to another customer belongs to the new one only."""
    candidates = conn.execute(
        sa.select(invoices.c.customer_id).where(invoices.c.phone == phone).distinct()
    ).scalars()
    owners = []
    for customer_id in candidates:
        newest = _newest(conn, customer_id)
        if newest is not None and newest.phone == phone:
            owners.append(customer_id)
    return sorted(owners)


def standing(conn: Connection, customer_id: str) -> Standing | None:
    """The customer as they stand now, or None when the ledger has no invoice of theirs."""
    customer = _newest(conn, customer_id)
    if customer is None:
        return None
    override = open_overrides(conn, [customer_id]).get(customer_id)
    if override is None:
        return Standing(customer, preference_of(customer), False)
    current = apply_preference(customer, override[1])
    return Standing(current, preference_of(current), True)


def _newest(conn: Connection, customer_id: str) -> Customer | None:
    columns = [invoices.c[LEDGER_COLUMN.get(f, f)] for f in CUSTOMER_FIELDS]
    row = conn.execute(
        sa.select(*columns)
        .where(invoices.c.customer_id == customer_id)
        .order_by(invoices.c.issue_date.desc(), invoices.c.number.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    values = row._mapping
    return customer_from_row({f: values[LEDGER_COLUMN.get(f, f)] for f in CUSTOMER_FIELDS})
