"""The stages of one cycle run as plain functions: stage, issue, report.

Each takes the settings and small values (cycle id, run id, chunk descriptors) and returns small
values, so an orchestrator (the Airflow DAG, or `invoices run`) can call them from any worker.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import sqlalchemy as sa

from billing.config import Settings
from billing.errors import InputError
from billing.issuing import IssueResult, issue_invoices, register_cycle
from billing.model import ChunkRef
from billing.staging import StagedCycle, load_staged, read_chunk, stage_cycle
from storage.blobs import open_store
from storage.ledger import invoices, open_ledger, runs

CHANNELS = ("email", "sms")


def new_run_id(prefix: str = "cli") -> str:
    return f"{prefix}__{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def report_key(cycle_id: str, run_id: str, suffix: str = ".json") -> str:
    safe = re.sub(r"[^A-Za-z0-9._:+-]", "_", run_id)
    return f"reports/{cycle_id}/{safe}{suffix}"


def stage(settings: Settings, cycle_id: str) -> StagedCycle:
    """Validate and partition the export of `cycle_id`, and register the cycle in the ledger."""
    staged = stage_cycle(
        open_store(settings.source_url),
        open_store(settings.staging_url),
        cycle_id,
        chunk_size=settings.chunk_size,
    )
    register_cycle(open_ledger(settings.ledger_url), staged.cycle)
    return staged


def issue_chunk(settings: Settings, ref: ChunkRef, run_id: str) -> IssueResult:
    """Issue the invoices of one staged chunk (idempotent)."""
    staging = open_store(settings.staging_url)
    cycle = load_staged(staging, ref.cycle_id).cycle
    return issue_invoices(open_ledger(settings.ledger_url), cycle, read_chunk(staging, ref), run_id)


def issue(settings: Settings, cycle_id: str, run_id: str) -> IssueResult:
    """Issue every chunk of a staged cycle, in chunk order (so numbers follow the chunks)."""
    staged = load_staged(open_store(settings.staging_url), cycle_id)
    result = IssueResult()
    for ref in staged.chunks:
        result += issue_chunk(settings, ref, run_id)
    return result


def start_run(settings: Settings, cycle_id: str, run_id: str) -> datetime:
    """Record that a run of the cycle started (again, on a retry); returns its start time."""
    engine = open_ledger(settings.ledger_url)
    with engine.begin() as conn:
        found = conn.execute(sa.select(runs.c.started_at).where(runs.c.run_id == run_id)).first()
        if found:
            return found.started_at.replace(tzinfo=found.started_at.tzinfo or UTC)
        now = datetime.now(UTC)
        conn.execute(
            runs.insert().values(run_id=run_id, cycle_id=cycle_id, started_at=now, status="running")
        )
        return now


def cycle_totals(settings: Settings, cycle_id: str) -> dict[str, str]:
    engine = open_ledger(settings.ledger_url)
    with engine.connect() as conn:
        net, vat, gross, count = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(invoices.c.net_total), 0),
                sa.func.coalesce(sa.func.sum(invoices.c.vat_total), 0),
                sa.func.coalesce(sa.func.sum(invoices.c.total), 0),
                sa.func.count(),
            ).where(invoices.c.cycle_id == cycle_id)
        ).one()
    return {"net": f"{net:.2f}", "vat": f"{vat:.2f}", "gross": f"{gross:.2f}", "invoices": count}


def finalize_report(
    settings: Settings,
    staged: StagedCycle,
    issued: IssueResult,
    run_id: str,
    started_at: datetime | None = None,
) -> dict:
    """Build the run report (contract 4), store it in the archive and in the ledger's run row."""
    cycle_id = staged.cycle.cycle_id
    started_at = started_at or start_run(settings, cycle_id, run_id)
    totals = cycle_totals(settings, cycle_id)
    archive = open_store(settings.archive_url)
    staging = open_store(settings.staging_url)
    quarantine_key = report_key(cycle_id, run_id, ".quarantine.csv")
    archive.write_bytes(quarantine_key, staging.read_bytes(f"{cycle_id}/quarantine.csv"))
    finished_at = datetime.now(UTC)
    report = {
        "cycle_id": cycle_id,
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "customers": staged.customers,
        "quarantined_customers": staged.quarantined_customers,
        "quarantined_rows": staged.quarantined_rows,
        "flagged_customers": staged.flagged_customers,
        "invoices_issued": issued.issued,
        "invoices_existing": issued.existing,
        "invoices_in_cycle": totals.pop("invoices"),
        "pdfs_archived": 0,
        "notices": {ch: {"sent": 0, "failed": 0, "pending": 0} for ch in CHANNELS},
        "paper_queued": 0,
        "fallbacks": 0,
        "totals": totals,
        "chunks": len(staged.chunks),
        "quarantine_report": quarantine_key,
    }
    body = json.dumps(report, indent=2, ensure_ascii=False)
    archive.write_bytes(report_key(cycle_id, run_id), body.encode("utf-8"))
    with open_ledger(settings.ledger_url).begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .values(finished_at=finished_at, status="finished", report=body)
        )
    return report


def load_report(settings: Settings, cycle_id: str, run_id: str | None = None) -> dict:
    """A stored run report: the given run's, or the one that finished last."""
    archive = open_store(settings.archive_url)
    if run_id:
        keys = [report_key(cycle_id, run_id)]
    else:
        keys = [k for k in archive.list(f"reports/{cycle_id}/") if k.endswith(".json")]
    reports = []
    for key in keys:
        try:
            reports.append(json.loads(archive.read_bytes(key)))
        except FileNotFoundError:
            pass
    if not reports:
        raise InputError(archive.describe(f"reports/{cycle_id}/"), "no run report for this cycle")
    return max(reports, key=lambda r: r["finished_at"])


def run_cycle(settings: Settings, cycle_id: str, run_id: str | None = None) -> dict:
    """Run every stage of one cycle in this process (what the DAG does, without Airflow)."""
    run_id = run_id or new_run_id()
    started_at = start_run(settings, cycle_id, run_id)
    staged = stage(settings, cycle_id)
    issued = issue(settings, cycle_id, run_id)
    return finalize_report(settings, staged, issued, run_id, started_at)
