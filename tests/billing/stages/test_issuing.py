"""Numbering: strictly ascending per series, no gaps, no duplicates, idempotent re-issue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing.domain.errors import CycleConflictError
from billing.stages.issuing import format_number, issue_invoices, register_cycle
from storage.ledger import invoice_lines, invoice_vat, invoices, open_ledger, series_counters
from tests.support.issue_worker import cycle, items
from tests.support.paths import REPO

WORKER = REPO / "tests" / "support" / "issue_worker.py"


def numbers(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(invoices.c.seq).order_by(invoices.c.seq)).scalars())


def test_numbers_are_gap_free_and_reissue_allocates_nothing(ledger_url):
    engine = open_ledger(ledger_url)
    november, december = cycle(11), cycle(12)
    register_cycle(engine, november)
    data = items(120)

    first = issue_invoices(engine, november, data, "run-1", batch_size=50)
    assert (first.issued, first.existing) == (120, 0)
    with engine.connect() as conn:
        snapshot = conn.execute(sa.select(invoices).order_by(invoices.c.seq)).all()
    assert [r.number for r in snapshot] == [format_number("OR", n) for n in range(1, 121)]

    again = issue_invoices(engine, november, data, "run-2", batch_size=7)
    assert (again.issued, again.existing) == (0, 120)
    with engine.connect() as conn:
        assert conn.execute(sa.select(invoices).order_by(invoices.c.seq)).all() == snapshot
        assert conn.execute(sa.select(series_counters.c.last_number)).scalar_one() == 120

    register_cycle(engine, december)
    issue_invoices(engine, december, data[:30], "run-3")
    assert numbers(engine) == list(range(1, 151))


def test_invoice_amounts_are_exact_in_the_ledger(ledger_url):
    engine = open_ledger(ledger_url)
    november = cycle(11)
    register_cycle(engine, november)
    customer, charges = items(1, lines=3)[0]  # 0.99 + 1.99 + 2.99 at 21 %
    issue_invoices(engine, november, [(customer, charges)], "run-1")
    with engine.connect() as conn:
        inv = conn.execute(sa.select(invoices)).one()
        vat = conn.execute(sa.select(invoice_vat)).all()
        lines = conn.execute(sa.select(invoice_lines).order_by(invoice_lines.c.line_no)).all()
    assert (inv.net_total, inv.vat_total, inv.total) == (
        Decimal("5.97"), Decimal("1.25"), Decimal("7.22"),
    )  # fmt: skip
    assert [(v.rate, v.base, v.vat) for v in vat] == [
        (Decimal("21"), Decimal("5.97"), Decimal("1.25"))
    ]
    assert [line.unit_price for line in lines] == [
        Decimal("0.99"),
        Decimal("1.99"),
        Decimal("2.99"),
    ]
    assert inv.customer_name == "Client Țăran 0" and inv.city == "Iași"


def test_a_cycle_cannot_change_once_registered(ledger_url):
    engine = open_ledger(ledger_url)
    register_cycle(engine, cycle(11))
    register_cycle(engine, cycle(11))  # the same again is fine
    changed = replace(cycle(11), due_date=date(2026, 12, 1))
    with pytest.raises(CycleConflictError, match="due_date"):
        register_cycle(engine, changed)


def _in_transaction_with_writes(admin_url: str, app: str) -> bool:
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = :app AND backend_xid IS NOT NULL"
                    ),
                    {"app": app},
                ).scalar()
            )
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_workers_and_a_killed_one_leave_no_gap(pg_url):
    """Four processes issue overlapping cycles at once while a fifth is killed mid-transaction;
    afterwards every series number 1..N is used exactly once."""
    customers = 1500
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    victim_url = pg_url + "?application_name=invoices-victim"
    victim = subprocess.Popen(
        [sys.executable, str(WORKER), victim_url, "1500", str(customers), "9"], env=env
    )
    plans = [("10", "11"), ("11", "12"), ("12", "10"), ("10", "11", "12", "9")]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), pg_url, "40", str(customers), *months], env=env
        )
        for months in plans
    ]
    deadline = time.monotonic() + 120
    while not _in_transaction_with_writes(pg_url, "invoices-victim"):
        assert victim.poll() is None, "the victim finished before it could be killed"
        assert time.monotonic() < deadline, "the victim never wrote in a transaction"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for worker in workers:
        assert worker.wait(timeout=300) == 0

    engine = open_ledger(pg_url)
    expected = (
        customers * 4
    )  # cycles 2026-09 .. 2026-12, the killed worker's cycle completed by another
    assert numbers(engine) == list(range(1, expected + 1))
    with engine.connect() as conn:
        per_cycle = dict(
            conn.execute(
                sa.select(invoices.c.cycle_id, sa.func.count()).group_by(invoices.c.cycle_id)
            ).all()
        )
        assert per_cycle == {f"2026-{m:02d}": customers for m in (9, 10, 11, 12)}
        assert conn.execute(sa.select(series_counters.c.last_number)).scalar_one() == expected
        orphans = conn.execute(
            sa.select(sa.func.count())
            .select_from(invoice_lines)
            .where(invoice_lines.c.number.not_in(sa.select(invoices.c.number)))
        ).scalar_one()
        assert orphans == 0


def test_outbox_rows_are_written_with_their_invoice_and_only_once(ledger_url):
    from billing.domain.routing import route
    from storage.ledger import notices

    engine = open_ledger(ledger_url)
    november = cycle(11)
    register_cycle(engine, november)
    data = items(30)
    data[3] = (replace(data[3][0], notify="both", delivery="paper"), data[3][1])
    data[4] = (replace(data[4][0], email="", phone=""), data[4][1])
    issue_invoices(engine, november, data, "run-1", batch_size=8)
    issue_invoices(engine, november, data, "run-2", batch_size=8)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(notices).order_by(notices.c.key)).all()
    expected = {
        f"{format_number('OR', n)}:{channel}"
        for n, (customer, _) in enumerate(data, start=1)
        for channel in route(customer).channels
    }
    assert {r.key for r in rows} == expected and len(rows) == len(expected)
    assert {r.key for r in rows if r.fallback} == {"OR00000005:paper"}
    assert {r.key for r in rows if r.channel == "paper"} == {"OR00000004:paper", "OR00000005:paper"}
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)
