"""The stages of one cycle run as plain functions: stage, issue, archive (render + store), notify,
print, and the report with the cycle manifest; plus resending failed notices.

Each takes the process's `Runtime` and small values (cycle id, run id, chunk descriptors) and returns small
values, so an orchestrator (the Airflow DAG, or `invoices run`) can call them from any worker.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from billing.domain.cycles import BilledPeriod, check_period
from billing.domain.errors import InputError
from billing.domain.model import ChunkRef
from billing.domain.notices import FAILED, MESSAGE_CHANNELS, REPORTED_AS, Channel, NoticeStatus
from billing.runtime import Runtime
from billing.stages import audit, view
from billing.stages.archiving import ArchiveResult, archive_invoices, finalize_manifest
from billing.stages.issuing import IssueResult, issue_invoices, register_cycle
from billing.stages.notifying import NotifyResult, email_channel, notify_invoices, sms_channel
from billing.stages.printing import PrintResult, print_pending
from billing.stages.report_text import mask_contacts, pick_examples, safe_customer_id
from billing.stages.staging import (
    StagedCycle,
    load_staged,
    read_chunk,
    read_chunk_customer_ids,
    stage_cycle,
)
from storage.ledger import invoice_documents, invoices, notices, runs

CHANNELS = tuple(str(channel) for channel in MESSAGE_CHANNELS)


def new_run_id(prefix: str = "cli") -> str:
    return f"{prefix}__{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def report_key(cycle_id: str, run_id: str, suffix: str = ".json") -> str:
    safe = re.sub(r"[^A-Za-z0-9._:+-]", "_", run_id)
    return f"reports/{cycle_id}/{safe}{suffix}"


def stage(runtime: Runtime, cycle_id: str, period: BilledPeriod | None = None) -> StagedCycle:
    """Validate and partition the export of `cycle_id`, and register the cycle in the ledger.

    With `period` (a scheduled or backfill run's), an export whose cycle.json bills other days
    is refused before the cycle is registered, so a corrected export can still be run."""
    staged = stage_cycle(
        runtime.source,
        runtime.staging,
        cycle_id,
        chunk_size=runtime.settings.chunk_size,
    )
    if period is not None:
        check_period(staged.cycle, period)
    register_cycle(runtime.ledger, staged.cycle)
    return staged


def staged_chunks(runtime: Runtime, cycle_id: str) -> tuple[ChunkRef, ...]:
    """The chunks an earlier `stage` made of the cycle."""
    return load_staged(runtime.staging, cycle_id).chunks


def issue_chunk(runtime: Runtime, ref: ChunkRef, run_id: str) -> IssueResult:
    """Issue the invoices of one staged chunk (idempotent)."""
    staging = runtime.staging
    cycle = load_staged(staging, ref.cycle_id).cycle
    return issue_invoices(runtime.ledger, cycle, read_chunk(staging, ref), run_id)


def issue(runtime: Runtime, cycle_id: str, run_id: str) -> IssueResult:
    """Issue every chunk of a staged cycle, in chunk order (so numbers follow the chunks)."""
    result = IssueResult()
    for ref in staged_chunks(runtime, cycle_id):
        result += issue_chunk(runtime, ref, run_id)
    return result


def archive_chunk(runtime: Runtime, ref: ChunkRef, run_id: str) -> ArchiveResult:
    """Render and archive the PDFs of one chunk's invoices that are not archived yet."""
    return archive_invoices(
        runtime.ledger,
        runtime.archive,
        ref.cycle_id,
        read_chunk_customer_ids(runtime.staging, ref),
        run_id,
        runtime.supplier,
        runtime.renderer.render,
        runtime.renderer.template_version,
        runtime.settings.retention_years,
    )


def archive_cycle(runtime: Runtime, cycle_id: str, run_id: str) -> ArchiveResult:
    """Render and archive every chunk of a staged cycle in this process."""
    result = ArchiveResult()
    for ref in staged_chunks(runtime, cycle_id):
        result += archive_chunk(runtime, ref, run_id)
    return result


def notify_chunk(
    runtime: Runtime, ref: ChunkRef, run_id: str, channels: tuple[str, ...] = CHANNELS
) -> dict[str, NotifyResult]:
    """Send the unsent e-mail and SMS notices of one chunk's invoices from the outbox."""
    supplier = runtime.supplier
    engine = runtime.ledger
    archive = runtime.archive
    customer_ids = read_chunk_customer_ids(runtime.staging, ref)
    builders = {
        "email": lambda: email_channel(
            runtime.email, supplier, runtime.settings.mail_link_url or None
        ),
        "sms": lambda: sms_channel(runtime.sms, supplier),
    }
    lease = timedelta(seconds=runtime.settings.notify_lease_seconds)
    return {
        name: notify_invoices(
            engine, archive, ref.cycle_id, customer_ids, builders[name](), run_id, lease=lease
        )
        for name in channels
    }


def notify_cycle(
    runtime: Runtime, cycle_id: str, run_id: str, channels: tuple[str, ...] = CHANNELS
) -> dict[str, NotifyResult]:
    """Send every chunk's unsent notices in this process."""
    totals = {name: NotifyResult() for name in channels}
    for ref in staged_chunks(runtime, cycle_id):
        for name, result in notify_chunk(runtime, ref, run_id, channels).items():
            totals[name] += result
    return totals


def resend_failed(
    runtime: Runtime, cycle_id: str, run_id: str, channels: tuple[str, ...] = CHANNELS
) -> dict[str, NotifyResult]:
    """Put the cycle's failed notices back in the outbox and send them; sent ones stay sent."""
    with runtime.ledger.begin() as conn:
        conn.execute(
            notices.update()
            .where(
                notices.c.cycle_id == cycle_id,
                notices.c.channel.in_(channels),
                notices.c.status.in_(FAILED),
            )
            .values(status=NoticeStatus.PENDING, updated_at=datetime.now(UTC))
        )
    return notify_cycle(runtime, cycle_id, run_id, channels)


def print_cycle(runtime: Runtime, cycle_id: str, run_id: str) -> PrintResult:
    """Put the cycle's paper invoices that are in no batch yet into a print batch."""
    return print_pending(
        runtime.ledger,
        runtime.archive,
        cycle_id,
        run_id,
    )


def start_run(runtime: Runtime, cycle_id: str, run_id: str) -> datetime:
    """Record that a run of the cycle started (again, on a retry); returns its start time."""
    engine = runtime.ledger
    with engine.begin() as conn:
        found = conn.execute(sa.select(runs.c.started_at).where(runs.c.run_id == run_id)).first()
        if found:
            return found.started_at.replace(tzinfo=found.started_at.tzinfo or UTC)
        now = datetime.now(UTC)
        conn.execute(
            runs.insert().values(run_id=run_id, cycle_id=cycle_id, started_at=now, status="running")
        )
        return now


def cycle_counts(runtime: Runtime, cycle_id: str, run_id: str) -> dict:
    """Invoices of the cycle (those this run issued, and all) and the cycle's totals."""
    engine = runtime.ledger
    by_this_run = (invoices.c.run_id == run_id).label("by_this_run")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                by_this_run,
                sa.func.count(),
                sa.func.sum(invoices.c.net_total),
                sa.func.sum(invoices.c.vat_total),
                sa.func.sum(invoices.c.total),
            )
            .where(invoices.c.cycle_id == cycle_id)
            .group_by(by_this_run)
        ).all()
    issued = sum(r[1] for r in rows if r[0])
    count = sum(r[1] for r in rows)
    net, vat, gross = (sum((r[i] for r in rows), Decimal("0.00")) for i in (2, 3, 4))
    return {
        "issued": issued,
        "existing": count - issued,
        "totals": {"net": f"{net:.2f}", "vat": f"{vat:.2f}", "gross": f"{gross:.2f}"},
    }


def notice_counts(runtime: Runtime, cycle_id: str) -> dict:
    """The cycle's outbox by channel and state, paper invoices queued, and fallbacks."""
    with runtime.ledger.connect() as conn:
        rows = conn.execute(
            sa.select(notices.c.channel, notices.c.status, sa.func.count())
            .where(notices.c.cycle_id == cycle_id)
            .group_by(notices.c.channel, notices.c.status)
        ).all()
        fallbacks = conn.execute(
            sa.select(sa.func.count(sa.distinct(notices.c.number))).where(
                notices.c.cycle_id == cycle_id, notices.c.fallback.is_(True)
            )
        ).scalar_one()
    counts = {ch: {"sent": 0, "failed": 0, "pending": 0} for ch in CHANNELS}
    paper = 0
    for channel, status, count in rows:
        if channel == Channel.PAPER:
            paper += count
        else:
            counts[channel][REPORTED_AS[NoticeStatus(status)]] += count
    return {"notices": counts, "paper_queued": paper, "fallbacks": fallbacks}


def document_counts(runtime: Runtime, cycle_id: str, run_id: str) -> tuple[int, int]:
    """(PDFs this run archived, PDFs archived for the cycle in all)."""
    # One labelled expression in both clauses: PostgreSQL matches GROUP BY to the select list
    # by its text, and two separate comparisons would bind run_id under two names.
    by_this_run = (invoice_documents.c.run_id == run_id).label("by_this_run")
    with runtime.ledger.connect() as conn:
        by_run = dict(
            conn.execute(
                sa.select(by_this_run, sa.func.count())
                .where(invoice_documents.c.cycle_id == cycle_id)
                .group_by(by_this_run)
            ).all()
        )
    return by_run.get(True, 0), sum(by_run.values())


REPORT_EXAMPLES = 20  # example rows per list in the report
FAILURE_SCAN = 1000  # failed notices read to choose the examples from
REASON_LIMIT = 300  # characters of a failure reason kept in the report


def quarantine_summary(report_csv: bytes) -> dict:
    """The staged quarantine report by reason (every entry, and the flagged ones), with a few
    examples spread over the reasons. The `detail` column is left out: it may quote an
    e-mail address or a phone number."""
    by_reason: Counter[str] = Counter()
    flagged: Counter[str] = Counter()

    def entries():
        for entry in csv.DictReader(io.StringIO(report_csv.decode("utf-8", "replace"))):
            reason = entry.get("reason") or ""
            by_reason[reason] += 1
            if entry.get("action") == "flagged":
                flagged[reason] += 1
            row = entry.get("row") or ""
            yield {
                "file": entry.get("file") or "",
                "row": int(row) if row.isdigit() else mask_contacts(row),
                "customer_id": safe_customer_id(entry.get("customer_id") or ""),
                "column": entry.get("column") or "",
                "reason": reason,
                "action": entry.get("action") or "",
            }

    examples = pick_examples(entries(), "reason", REPORT_EXAMPLES)
    return {
        "entries": sum(by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "flagged": dict(sorted(flagged.items())),
        "examples": examples,
    }


def _failure_reason(last_error: str | None) -> str:
    """A failure reason fit for a log: contacts masked, on one line, of bounded length."""
    text = " ".join(mask_contacts(last_error or "").split())
    return text[:REASON_LIMIT] or "(no reason recorded)"


def failure_summary(runtime: Runtime, cycle_id: str) -> dict:
    """The cycle's failed notices (for good, or to be retried) by reason, with examples; never
    their recipients."""
    failed = sa.and_(notices.c.cycle_id == cycle_id, notices.c.status.in_(FAILED))
    with runtime.ledger.connect() as conn:
        groups = conn.execute(
            sa.select(notices.c.status, notices.c.last_error, sa.func.count())
            .where(failed)
            .group_by(notices.c.status, notices.c.last_error)
        ).all()
        rows = conn.execute(
            sa.select(
                notices.c.number, invoices.c.customer_id, notices.c.channel, notices.c.status,
                notices.c.attempts, notices.c.last_error,
            )
            .join(invoices, invoices.c.number == notices.c.number)
            .where(failed)
            .order_by(notices.c.number, notices.c.channel)
            .limit(FAILURE_SCAN)
        ).all()  # fmt: skip
    by_reason: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    for status, last_error, count in groups:
        by_reason[_failure_reason(last_error)] += count
        by_status[status] += count
    examples = pick_examples(
        (
            {
                "number": r.number,
                "customer_id": safe_customer_id(r.customer_id),
                "channel": r.channel,
                "status": r.status,
                "attempts": r.attempts,
                "reason": _failure_reason(r.last_error),
            }
            for r in rows
        ),
        "reason",
        REPORT_EXAMPLES,
    )
    return {
        "count": sum(by_status.values()),
        "by_status": dict(sorted(by_status.items())),
        "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "examples": examples,
    }


def finalize_report(runtime: Runtime, cycle_id: str, run_id: str) -> dict:
    """Write the cycle manifest and the run report (contract 4); the report also goes to the
    ledger's run row. Every count is read back from the ledger and staging, so a retried or
    re-run task is counted once."""
    started_at = start_run(runtime, cycle_id, run_id)
    staging = runtime.staging
    staged = load_staged(staging, cycle_id)
    engine = runtime.ledger
    archive = runtime.archive
    manifest = finalize_manifest(engine, archive, cycle_id, runtime.settings.retention_years)
    counts = cycle_counts(runtime, cycle_id, run_id)
    archived, documents = document_counts(runtime, cycle_id, run_id)
    quarantine_key = report_key(cycle_id, run_id, ".quarantine.csv")
    quarantine_csv = staging.read_bytes(f"{cycle_id}/quarantine.csv")
    archive.replace(quarantine_key, quarantine_csv)
    quarantine = quarantine_summary(quarantine_csv)
    failures = failure_summary(runtime, cycle_id)
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
        "invoices_issued": counts["issued"],
        "invoices_existing": counts["existing"],
        "pdfs_archived": archived,
        "pdfs_existing": documents - archived,
        **notice_counts(runtime, cycle_id),
        "totals": counts["totals"],
        "chunks": len(staged.chunks),
        "manifest": {"key": manifest.key, "sha256": manifest.sha256},
        "quarantine_report": quarantine_key,
        "period": {
            "start": staged.cycle.period_start.isoformat(),
            "end": staged.cycle.period_end.isoformat(),
        },
        "issue_date": staged.cycle.issue_date.isoformat(),
        "quarantine": quarantine,
        "failures": failures,
    }
    body = json.dumps(report, indent=2, ensure_ascii=False)
    archive.replace(report_key(cycle_id, run_id), body.encode("utf-8"))
    with engine.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .values(finished_at=finished_at, status="finished", report=body)
        )
    return report


def load_report(runtime: Runtime, cycle_id: str, run_id: str | None = None) -> dict:
    """A stored run report: the given run's, or the one that finished last."""
    archive = runtime.archive
    if run_id:
        keys = [report_key(cycle_id, run_id)]
    else:
        keys = [k for k in archive.list(f"reports/{cycle_id}/") if k.endswith(".json")]
    reports = []
    for key in keys:
        try:
            reports.append(json.loads(archive.get(key)))
        except FileNotFoundError:
            pass
    if not reports:
        raise InputError(f"{archive.url}/reports/{cycle_id}/", "no run report for this cycle")
    return max(reports, key=lambda r: r["finished_at"])


def verify_archive(runtime: Runtime, cycle_id: str) -> list[str]:
    """What is wrong with the cycle's archive, manifest chain and ledger (empty: they agree)."""
    return audit.verify_cycle(runtime.ledger, runtime.archive, cycle_id)


def manifest_size(runtime: Runtime, cycle_id: str) -> int:
    """How many files `download_archive` fetches for the cycle."""
    return audit.manifest_size(runtime.ledger, cycle_id)


def download_archive(
    runtime: Runtime, cycle_id: str, to: Path, progress: Callable[[int], object] | None = None
) -> list[str]:
    """Download the cycle's PDFs and manifest into `to`, verified; the problems found."""
    return audit.download_cycle(runtime.ledger, runtime.archive, cycle_id, to, progress=progress)


def last_invoices(runtime: Runtime, customer_id: str) -> list[dict]:
    """The customer's last six invoices, newest first, with links (`invoices view --json`)."""
    return view.last_invoices(
        runtime.ledger, runtime.archive, customer_id,
        expires_in=runtime.settings.link_expiry_seconds,
    )  # fmt: skip


def archive_lifecycle(runtime: Runtime, days: int, storage_class: str) -> dict:
    """Put the S3 lifecycle rule that moves invoices older than `days` to `storage_class`."""
    from storage.archive.s3 import apply_lifecycle

    archive = runtime.archive
    return apply_lifecycle(archive.client, archive.bucket, archive.prefix, days, storage_class)


def run_cycle(
    runtime: Runtime, cycle_id: str, run_id: str | None = None, send_notices: bool = True
) -> dict:
    """Run every stage of one cycle in this process (what the DAG does, without Airflow)."""
    run_id = run_id or new_run_id()
    start_run(runtime, cycle_id, run_id)
    stage(runtime, cycle_id)
    issue(runtime, cycle_id, run_id)
    archive_cycle(runtime, cycle_id, run_id)
    if send_notices:  # paper is a message to the customer too
        notify_cycle(runtime, cycle_id, run_id)
        print_cycle(runtime, cycle_id, run_id)
    return finalize_report(runtime, cycle_id, run_id)
