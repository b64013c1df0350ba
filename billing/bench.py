"""Benchmark: stage and issue one synthetic cycle, each figure against a floor measured alongside.

`python -m billing.bench [--customers N] [--ledger sqlite|postgresql|both]` generates a cycle of
N customers and prints one table:

- staging against the floor of merely reading the export (`csv.reader`, counting rows);
- issuing, and issuing again (which must allocate nothing), against the floor of bulk-inserting
  the same invoice rows with pre-assigned numbers, no counter lock and no idempotency check;
- the peak RSS of each stage, measured by the child process that ran it, against an idle child
  (the imports alone) and, for staging, against a cycle a quarter of the size.

Every heavy step runs in a spawned child that reports its own peak (VmHWM), so one step's
memory never shows in another's figure.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from billing.stages.issuing import (
    IssueResult,
    _invoice_rows,  # the insert floor builds the very rows that issuing inserts
    format_number,
    issue_invoices,
    register_cycle,
)
from billing.stages.staging import load_staged, read_chunk, stage_cycle
from sample_data.generator import write_cycle
from storage.blobs import open_store
from storage.ledger import invoice_lines, invoice_vat, invoices, open_ledger

CYCLE = "2026-11"
BATCH = 500  # invoices per transaction, as in issue_invoices
READ = "read floor (csv.reader)"
IDLE = "idle child RSS (imports)"
PG_URL = os.environ.get("INVOICES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def peak_rss_mb() -> float:
    """This process's own peak resident set size in MB (VmHWM: unlike ru_maxrss, it does not
    start from the size of the parent the process was forked from)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) / 1024


def in_child(func, *args):
    """`func(*args)` run in a freshly spawned process; its result."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func, args)


def read_floor(folder: Path) -> tuple[float, int, int]:
    """Seconds to read customers.csv and charges.csv with csv.reader, and their data rows."""
    start = time.perf_counter()
    counts = []
    for name in ("customers.csv", "charges.csv"):
        with (folder / name).open(encoding="utf-8", newline="") as src:
            counts.append(sum(1 for _ in csv.reader(src)) - 1)
    return time.perf_counter() - start, *counts


def run_staging(source: str, staging: str) -> tuple[float, float]:
    """Stage the cycle from `source` into `staging`: (seconds, peak RSS in MB)."""
    start = time.perf_counter()
    stage_cycle(open_store(source), open_store(staging), CYCLE, chunk_size=1000)
    return time.perf_counter() - start, peak_rss_mb()


def run_insert_floor(staging: str, url: str) -> tuple[float, float, int]:
    """Insert every staged invoice's rows, pre-numbered, into the empty ledger at `url`.

    Returns the seconds spent in the inserts alone, the seconds spent reading the chunks and
    building the rows (not part of the floor), and the number of invoices.
    """
    store = open_store(staging)
    staged = load_staged(store, CYCLE)
    cycle, engine = staged.cycle, open_ledger(url)
    register_cycle(engine, cycle)
    inserting = building = 0.0
    seq = 0
    now = datetime.now(UTC)
    for ref in staged.chunks:
        began = time.perf_counter()
        items = read_chunk(store, ref)
        building += time.perf_counter() - began
        for first in range(0, len(items), BATCH):
            began = time.perf_counter()
            rows, vat_rows, line_rows = [], [], []
            for customer, charges in items[first : first + BATCH]:
                seq += 1
                number = format_number(cycle.series, seq)
                invoice, vats, lines = _invoice_rows(number, seq, cycle, customer, charges)
                rows.append({**invoice, "issued_at": now, "run_id": "bench-floor"})
                vat_rows.extend(vats)
                line_rows.extend(lines)
            built = time.perf_counter()
            building += built - began
            with engine.begin() as conn:
                conn.execute(invoices.insert(), rows)
                conn.execute(invoice_vat.insert(), vat_rows)
                conn.execute(invoice_lines.insert(), line_rows)
            inserting += time.perf_counter() - built
    return inserting, building, seq


def run_issuing(staging: str, url: str) -> tuple[float, float, int, float]:
    """Issue the staged cycle into the empty ledger at `url`, then re-issue it.

    Returns (issue seconds, re-issue seconds, invoices issued, peak RSS in MB); raises
    AssertionError when the re-issue allocates any number.
    """
    store = open_store(staging)
    staged = load_staged(store, CYCLE)
    engine = open_ledger(url)
    register_cycle(engine, staged.cycle)
    seconds, results = [], []
    for run_id in ("bench-issue", "bench-reissue"):
        start = time.perf_counter()
        result = IssueResult()
        for ref in staged.chunks:
            result += issue_invoices(engine, staged.cycle, read_chunk(store, ref), run_id)
        seconds.append(time.perf_counter() - start)
        results.append(result)
    first, again = results
    if again.issued != 0 or again.existing != first.issued:
        raise AssertionError(f"re-issue allocated numbers: {again} after {first}")
    return seconds[0], seconds[1], first.issued, peak_rss_mb()


@contextmanager
def fresh_ledgers(kind: str, tmp: Path, pg_url: str) -> Iterator[tuple[str, str]]:
    """URLs of two empty ledgers (for issuing, for the insert floor), dropped on exit."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/{kind}-issue.db", f"sqlite:///{tmp}/{kind}-floor.db"
        return
    name = f"invoices_bench_{uuid.uuid4().hex[:12]}"
    names = (name, f"{name}_floor")
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for db in names:
                conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
        url = sa.engine.make_url(pg_url)
        yield tuple(url.set(database=db).render_as_string(hide_password=False) for db in names)
    finally:
        with admin.connect() as conn:
            for db in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.dispose()


class _Report:
    """The result table; each figure's ratio is against an earlier figure, named as baseline."""

    def __init__(self, customers: int) -> None:
        self.table = Table(
            title=f"Staging and issuing one cycle of {customers:,} customers",
            caption=f"os.cpu_count() = {os.cpu_count()}, Python {platform.python_version()}",
        )
        for column in ("figure", "value", "seconds", "baseline", "ratio"):
            right = column in ("seconds", "ratio")
            self.table.add_column(column, justify="right" if right else "left")
        self.measured: dict[str, float] = {}

    def _add(self, figure: str, value: str, measure: float, shown: str, baseline: str) -> None:
        ratio = f"{measure / self.measured[baseline]:.2f}x" if baseline else ""
        self.table.add_row(figure, value, shown, baseline or "(baseline)", ratio)
        self.measured[figure] = measure

    def timed(
        self, figure: str, seconds: float, counts: dict[str, int], baseline: str = ""
    ) -> None:
        """A timing, shown as rates: `counts` maps a unit ("invoices") to how many were done."""
        rates = ", ".join(f"{n / seconds:,.0f} {unit}/s" for unit, n in counts.items())
        self._add(figure, rates, seconds, f"{seconds:.2f}", baseline)

    def memory(self, figure: str, megabytes: float, baseline: str = "") -> None:
        """A peak RSS in MB."""
        self._add(figure, f"{megabytes:.0f} MB", megabytes, "", baseline)


def bench(customers: int, ledgers: tuple[str, ...], pg_url: str = PG_URL) -> Table:
    """Run the benchmark for a cycle of `customers` customers on each ledger; the table."""
    report = _Report(customers)
    with tempfile.TemporaryDirectory(prefix="invoices-bench-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        write_cycle(tmp / "full", CYCLE, customers, seed=1)
        generate_s = time.perf_counter() - start
        write_cycle(tmp / "quarter", CYCLE, customers // 4, seed=1)
        read_s, n_customers, n_charges = read_floor(tmp / "full" / CYCLE)
        idle_mb = in_child(peak_rss_mb)
        stage_s, stage_mb = in_child(run_staging, str(tmp / "full"), str(tmp / "staging"))
        _, quarter_mb = in_child(run_staging, str(tmp / "quarter"), str(tmp / "staging-quarter"))

        rows = {"rows": n_customers + n_charges}
        report.timed(READ, read_s, rows)
        report.timed("generate cycle (write_cycle)", generate_s, rows, READ)
        staged = {"customers": n_customers, "charge rows": n_charges}
        report.timed("staging", stage_s, staged, READ)
        report.memory(IDLE, idle_mb)
        quarter = f"staging RSS, N/4 = {customers // 4:,}"
        report.memory(quarter, quarter_mb, IDLE)
        report.memory(f"staging RSS, N = {customers:,}", stage_mb, quarter)

        staging = str(tmp / "staging")
        for kind in ledgers:
            with fresh_ledgers(kind, tmp, pg_url) as (issue_url, floor_url):
                insert_s, build_s, count = in_child(run_insert_floor, staging, floor_url)
                issue_s, reissue_s, issued, issue_mb = in_child(run_issuing, staging, issue_url)
            if issued != count:
                raise AssertionError(f"{kind}: issued {issued}, the floor inserted {count}")
            done, floor = {"invoices": count}, f"{kind}: insert floor"
            report.timed(floor, insert_s, done)
            report.timed(f"{kind}: read chunks + build rows", build_s, done, floor)
            report.timed(f"{kind}: issuing", issue_s, done, floor)
            report.timed(f"{kind}: re-issue, 0 allocated", reissue_s, done, floor)
            report.memory(f"{kind}: issuing RSS", issue_mb, IDLE)
    return report.table


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m billing.bench", description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000, help="cycle size N")
    parser.add_argument("--ledger", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=PG_URL, help="a PostgreSQL database to connect to")
    args = parser.parse_args(argv)
    if args.customers < 4:
        parser.error("--customers must be at least 4 (the memory figure stages N/4 too)")
    ledgers = ("sqlite", "postgresql") if args.ledger == "both" else (args.ledger,)
    console = Console(width=None if sys.stdout.isatty() else 120)  # not 80 columns in a pipe
    console.print(bench(args.customers, ledgers, args.pg_url))


if __name__ == "__main__":
    main()
