"""Issue invoices: one per (cycle, customer), numbered with no gaps and no duplicates.

A number is allocated from the series' counter row, locked (SELECT ... FOR UPDATE; on SQLite the
transaction's write lock) inside the very transaction that inserts the invoices, so a rollback or
a killed worker gives its numbers back and concurrent workers queue on the lock. A database
sequence is never used: PostgreSQL does not roll `nextval` back, which would leave gaps.

Issuing is idempotent: a customer already invoiced for the cycle keeps its invoice, untouched,
and consumes no number. An issued invoice is never modified.

A preference the customer changed on the self-service page (or by phone) after the export was
made overrides the export's delivery, notices and mailing address, in the same transaction
(storage.preferences).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from billing.domain.errors import CycleConflictError
from billing.domain.model import Charge, Customer, Cycle
from billing.domain.money import compute_totals, line_net
from billing.domain.notices import NoticeStatus
from billing.domain.routing import recipient, route
from billing.stages.progress import NO_PROGRESS, Progress
from storage.invoice_records import customer_snapshot
from storage.ledger import (
    cycles,
    insert_rows,
    invoice_lines,
    invoice_vat,
    invoices,
    notices,
    series_counters,
)
from storage.preferences import settle_overrides

NUMBER_DIGITS = 8


def format_number(series: str, seq: int) -> str:
    """The printed invoice number: series and a zero-padded sequence (OR00000001)."""
    return f"{series}{seq:0{NUMBER_DIGITS}d}"


@dataclass(frozen=True)
class IssueResult:
    issued: int = 0
    existing: int = 0

    def __add__(self, other: IssueResult) -> IssueResult:
        return IssueResult(self.issued + other.issued, self.existing + other.existing)


def register_cycle(engine: Engine, cycle: Cycle) -> None:
    """Record the cycle in the ledger; a cycle staged again must describe the same cycle."""
    row = {
        "cycle_id": cycle.cycle_id,
        "series": cycle.series,
        "period_start": cycle.period_start,
        "period_end": cycle.period_end,
        "issue_date": cycle.issue_date,
        "due_date": cycle.due_date,
        "currency": cycle.currency,
    }
    with engine.begin() as conn:
        found = conn.execute(sa.select(cycles).where(cycles.c.cycle_id == cycle.cycle_id)).first()
        if found is None:
            conn.execute(cycles.insert().values(**row, registered_at=datetime.now(UTC)))
            _ensure_counter(conn, cycle.series)
            return
        changed = [k for k, v in row.items() if getattr(found, k) != v]
        if changed:
            raise CycleConflictError(
                f"cycle {cycle.cycle_id} was first registered with other "
                f"{', '.join(changed)}; its invoices are issued and cannot change"
            )


def _ensure_counter(conn: Connection, series: str) -> None:
    exists = conn.execute(
        sa.select(series_counters.c.series).where(series_counters.c.series == series)
    ).first()
    if exists is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(series_counters)
            .values(series=series, last_number=0, updated_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["series"])
        )


def issue_invoices(
    engine: Engine,
    cycle: Cycle,
    items: Sequence[tuple[Customer, Sequence[Charge]]],
    run_id: str,
    batch_size: int = 500,
    progress: Progress = NO_PROGRESS,
) -> IssueResult:
    """Issue the invoices of `items` (customers with their charges), one transaction per batch."""
    result = IssueResult()
    progress.begin(len(items))
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        result += _issue_batch(engine, cycle, batch, run_id)
        progress.advance(len(batch))
    return result


def _issue_batch(engine, cycle: Cycle, batch, run_id: str) -> IssueResult:
    with engine.begin() as conn:
        last = conn.execute(
            sa.select(series_counters.c.last_number)
            .where(series_counters.c.series == cycle.series)
            .with_for_update()
        ).scalar_one()
        ids = [customer.customer_id for customer, _ in batch]
        done = set(
            conn.execute(
                sa.select(invoices.c.customer_id).where(
                    invoices.c.cycle_id == cycle.cycle_id, invoices.c.customer_id.in_(ids)
                )
            ).scalars()
        )
        fresh = [(c, charges) for c, charges in batch if c.customer_id not in done]
        if not fresh:
            return IssueResult(existing=len(batch))
        now = datetime.now(UTC)
        # a preference the customer changed since the export was made shapes this invoice
        settled = settle_overrides(conn, [c for c, _ in fresh], cycle.cycle_id, now)
        fresh = [(c, charges) for c, (_, charges) in zip(settled, fresh, strict=True)]
        rows, vat_rows, line_rows, notice_rows = [], [], [], []
        for offset, (customer, charges) in enumerate(fresh, start=1):
            number = format_number(cycle.series, last + offset)
            inv, vats, lines = _invoice_rows(number, last + offset, cycle, customer, charges)
            rows.append({**inv, "issued_at": now, "run_id": run_id})
            vat_rows.extend(vats)
            line_rows.extend(lines)
            notice_rows.extend(_notice_rows(number, cycle.cycle_id, customer, now))
        insert_rows(conn, invoices, rows)
        insert_rows(conn, invoice_vat, vat_rows)
        insert_rows(conn, invoice_lines, line_rows)
        insert_rows(conn, notices, notice_rows)  # the outbox: in the invoice's own transaction
        conn.execute(
            series_counters.update()
            .where(series_counters.c.series == cycle.series)
            .values(last_number=last + len(fresh), updated_at=now)
        )
    return IssueResult(issued=len(fresh), existing=len(batch) - len(fresh))


def _notice_rows(number: str, cycle_id: str, customer: Customer, now: datetime) -> list[dict]:
    chosen = route(customer)
    return [
        {
            "key": f"{number}:{channel}", "number": number, "cycle_id": cycle_id,
            "channel": channel, "recipient": recipient(customer, channel),
            "fallback": chosen.fallback, "status": NoticeStatus.PENDING, "attempts": 0, "last_error": "",
            "provider_message_id": "", "created_at": now, "updated_at": now,
        }
        for channel in chosen.channels
    ]  # fmt: skip


def _invoice_rows(
    number: str, seq: int, cycle: Cycle, customer: Customer, charges: Iterable[Charge]
):
    lines = []
    for line_no, charge in enumerate(charges, start=1):
        lines.append(
            {
                "number": number,
                "line_no": line_no,
                "description": charge.description,
                "quantity": charge.quantity,
                "unit_price": charge.unit_price,
                "net": line_net(charge.quantity, charge.unit_price),
                "vat_rate": charge.vat_rate,
                "service_start": charge.service_start,
                "service_end": charge.service_end,
                "source_row": charge.row,
            }
        )
    totals = compute_totals((line["net"], line["vat_rate"]) for line in lines)
    vats = [
        {"number": number, "rate": s.rate, "base": s.base, "vat": s.vat} for s in totals.by_rate
    ]
    invoice = {
        "number": number,
        "series": cycle.series,
        "seq": seq,
        "cycle_id": cycle.cycle_id,
        "issue_date": cycle.issue_date,
        "due_date": cycle.due_date,
        "period_start": cycle.period_start,
        "period_end": cycle.period_end,
        "currency": cycle.currency,
        **customer_snapshot(customer),
        "net_total": totals.net,
        "vat_total": totals.vat,
        "total": totals.gross,
        "line_count": len(lines),
        "status": "issued",
    }
    return invoice, vats, lines
