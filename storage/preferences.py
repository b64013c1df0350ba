"""Preference changes in the ledger: recording them, the open override of each customer, and
settling them as cycles meet them (billing.domain.preferences says why).

A customer has at most one open change: recording a new one supersedes the older ones in the
same transaction. `settle_overrides` runs inside the issuing transaction, so a change is applied
or settled exactly when the invoice it shapes is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from billing.domain.model import Address, Customer
from billing.domain.preferences import SOURCES, Preference, apply_preference, reflects
from storage.ledger import preference_changes

OPEN_STATES = ("open", "applied")  # still overriding the export
_CHANGE_LOCK_ID = 0x1F0_C0DE  # pg_advisory_xact_lock class of a customer's preference changes


def record_change(
    conn: Connection, customer_id: str, preference: Preference, source: str, now: datetime
) -> int:
    """Record `preference` as the customer's newest choice (made through `source`); returns the
    change's id. Older open changes of the customer are superseded."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    if conn.dialect.name == "postgresql":
        # Two changes at once (a form sent twice, the page and an SMS) would each find no open
        # change to supersede and both stay open; one at a time per customer, the second
        # supersedes the first. (On SQLite the transaction's write lock already does this.)
        conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(_CHANGE_LOCK_ID, sa.func.hashtext(customer_id)))
        )
    conn.execute(
        preference_changes.update()
        .where(
            preference_changes.c.customer_id == customer_id,
            preference_changes.c.state.in_(OPEN_STATES),
        )
        .values(state="superseded", settled_at=now)
    )
    paper = preference.paper_address
    return conn.execute(
        preference_changes.insert().values(
            customer_id=customer_id, changed_at=now, source=source,
            delivery=preference.delivery, notify=preference.notify,
            paper_street=paper.street if paper else "", paper_city=paper.city if paper else "",
            paper_county=paper.county if paper else "",
            paper_postal_code=paper.postal_code if paper else "",
            state="open",
        )
    ).inserted_primary_key[0]  # fmt: skip


def open_overrides(
    conn: Connection, customer_ids: Sequence[str]
) -> dict[str, tuple[int, Preference]]:
    """The open change (id, preference) of each of `customer_ids` that has one."""
    if not customer_ids:
        return {}
    rows = conn.execute(
        sa.select(preference_changes).where(
            preference_changes.c.customer_id.in_(customer_ids),
            preference_changes.c.state.in_(OPEN_STATES),
        )
    )
    return {row.customer_id: (row.id, _preference(row)) for row in rows}


def settle_overrides(
    conn: Connection, customers: Sequence[Customer], cycle_id: str, now: datetime
) -> list[Customer]:
    """The customers as the cycle invoices them: each open change the export does not reflect
    is applied (and marked applied, first by this cycle); one the export reflects is settled
    and the export is taken as it is."""
    overrides = open_overrides(conn, [c.customer_id for c in customers])
    if not overrides:
        return list(customers)
    applied, reflected, result = [], [], []
    for customer in customers:
        found = overrides.get(customer.customer_id)
        if found is None:
            result.append(customer)
        elif reflects(customer, found[1]):
            reflected.append(found[0])
            result.append(customer)
        else:
            applied.append(found[0])
            result.append(apply_preference(customer, found[1]))
    if reflected:
        conn.execute(
            preference_changes.update()
            .where(preference_changes.c.id.in_(reflected))
            .values(state="reflected", cycle_id=cycle_id, settled_at=now)
        )
    if applied:
        conn.execute(
            preference_changes.update()
            .where(preference_changes.c.id.in_(applied), preference_changes.c.state == "open")
            .values(state="applied", cycle_id=cycle_id)
        )
    return result


def changes_since(
    engine: Engine, since: datetime | None = None, page: int = 1000
) -> Iterator[dict]:
    """Every recorded change (made at or after `since`), oldest first, as flat rows.

    Read `page` rows per short transaction, so a slow reader (an export piped on) never keeps
    one open: on SQLite every transaction holds the ledger's write lock."""
    order = (preference_changes.c.changed_at, preference_changes.c.id)
    query = sa.select(preference_changes).order_by(*order).limit(page)
    if since is not None:
        query = query.where(preference_changes.c.changed_at >= since)
    after = None
    while True:
        with engine.connect() as conn:
            rows = [
                dict(row._mapping)
                for row in conn.execute(
                    query if after is None else query.where(sa.tuple_(*order) > after)
                )
            ]
        yield from rows
        if len(rows) < page:
            return
        after = sa.tuple_(*(sa.literal(rows[-1][c.name], c.type) for c in order))


def _preference(row) -> Preference:
    paper = None
    if row.paper_street:
        paper = Address(row.paper_street, row.paper_city, row.paper_county, row.paper_postal_code)
    return Preference(row.delivery, row.notify, paper)
