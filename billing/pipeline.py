"""The stages of one cycle run as plain functions: stage, issue, archive (render + store), notify,
print, and the report with the cycle manifest; plus resending failed notices and the export of
the preference changes customers made.

Each takes the process's `Runtime` and small values (cycle id, run id, chunk descriptors) and returns small
values, so an orchestrator (the Airflow DAG, or `invoices run`) can call them from any worker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from billing.domain.cycles import TIMEZONE, BilledPeriod, check_period
from billing.domain.errors import ConfigurationError, InputError
from billing.domain.layout import report_key, reports_prefix
from billing.domain.model import ChunkRef
from billing.domain.notices import MESSAGE_CHANNELS
from billing.runtime import Runtime
from billing.stages import (
    audit,
    efactura,
    preference_export,
    report_text,
    reporting,
    resending,
    view,
)
from billing.stages.archiving import ArchiveResult, archive_invoices
from billing.stages.issuing import IssueResult, issue_invoices, register_cycle
from billing.stages.notifying import NotifyResult, email_channel, notify_invoices, sms_channel
from billing.stages.printing import PrintResult, print_pending
from billing.stages.progress import NO_PROGRESS, Progress
from billing.stages.progress import LogProgress as LogProgress  # the DAG tasks' progress lines
from billing.stages.staging import (
    StagedCycle,
    load_staged,
    read_chunk,
    read_chunk_customer_ids,
    stage_cycle,
)
from renderers.efactura.ubl import check_supplier as check_efactura_supplier

CHANNELS = tuple(str(channel) for channel in MESSAGE_CHANNELS)
log = logging.getLogger(__name__)


@dataclass
class _Done:
    items: int = 0


@contextmanager
def _timed(runtime: Runtime, run_id: str | None, stage: str, part: int = 0) -> Iterator[_Done]:
    """Record in the ledger how long this part of `stage` took and how many items it handled
    (the run report's timings), once it has finished; nothing without a run."""
    from storage.timings import record_timing

    started, done = datetime.now(UTC), _Done()
    yield done
    if run_id:
        record_timing(runtime.ledger, run_id, stage, part, started, datetime.now(UTC), done.items)


def new_run_id(prefix: str = "cli") -> str:
    return f"{prefix}__{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def stage(
    runtime: Runtime, cycle_id: str, period: BilledPeriod | None = None, run_id: str | None = None
) -> StagedCycle:
    """Validate and partition the export of `cycle_id`, and register the cycle in the ledger.

    With `period` (a scheduled or backfill run's), an export whose cycle.json bills other days
    is refused before the cycle is registered, so a corrected export can still be run."""
    with _timed(runtime, run_id, "stage") as done:
        staged = stage_cycle(
            runtime.source,
            runtime.staging,
            cycle_id,
            chunk_size=runtime.settings.chunk_size,
            max_chunks=runtime.settings.max_chunks,
        )
        if period is not None:
            check_period(staged.cycle, period)
        register_cycle(runtime.ledger, staged.cycle)
        done.items = staged.customers
    return staged


def staged_chunks(runtime: Runtime, cycle_id: str) -> tuple[ChunkRef, ...]:
    """The chunks an earlier `stage` made of the cycle."""
    return load_staged(runtime.staging, cycle_id).chunks


def issue_chunk(
    runtime: Runtime, ref: ChunkRef, run_id: str, progress: Progress = NO_PROGRESS
) -> IssueResult:
    """Issue the invoices of one staged chunk (idempotent)."""
    staging = runtime.staging
    cycle = load_staged(staging, ref.cycle_id).cycle
    return issue_invoices(
        runtime.ledger, cycle, read_chunk(staging, ref), run_id, progress=progress
    )


def issue(
    runtime: Runtime, cycle_id: str, run_id: str, progress: Progress = NO_PROGRESS
) -> IssueResult:
    """Issue every chunk of a staged cycle, in chunk order (so numbers follow the chunks)."""
    result = IssueResult()
    with _timed(runtime, run_id, "issue") as done:
        for ref in staged_chunks(runtime, cycle_id):
            result += issue_chunk(runtime, ref, run_id, progress)
        done.items = result.issued + result.existing
    return result


def archive_chunk(
    runtime: Runtime, ref: ChunkRef, run_id: str, progress: Progress = NO_PROGRESS
) -> ArchiveResult:
    """Render and archive the PDFs and e-Factura XMLs of one chunk's invoices that are not
    archived yet."""
    renderer = runtime.renderer
    make_xml = renderer.efactura
    if make_xml is not None:
        try:
            check_efactura_supplier(runtime.supplier)
        except ConfigurationError as exc:
            # The invoices still go out: their XMLs are made by a run after the supplier file
            # is mended (the run report warns of every invoice without one, and the e-Factura
            # DAG fails as their deadline nears).
            log.error("chunk %s: no e-Factura XML is made: %s", ref.number, exc)
            make_xml = None
    with _timed(runtime, run_id, "render_archive", ref.number) as done, \
            runtime.render_processes() as renderers:  # fmt: skip
        result = archive_invoices(
            runtime.ledger,
            runtime.archive,
            ref.cycle_id,
            read_chunk_customer_ids(runtime.staging, ref),
            run_id,
            runtime.supplier,
            runtime.renderer.render,
            runtime.renderer.template_version,
            runtime.settings.retention_years,
            renderers=renderers,
            progress=progress,
            make_xml=make_xml,
        )
        done.items = result.archived + result.recovered
    return result


def archive_cycle(
    runtime: Runtime, cycle_id: str, run_id: str, progress: Progress = NO_PROGRESS
) -> ArchiveResult:
    """Render and archive every chunk of a staged cycle in this process."""
    result = ArchiveResult()
    for ref in staged_chunks(runtime, cycle_id):
        result += archive_chunk(runtime, ref, run_id, progress)
    return result


def validate_efactura(
    runtime: Runtime,
    cycle_id: str | None,
    run_id: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> efactura.ValidationResult:
    """Validate the cycle's (or every cycle's) archived e-Factura XMLs not validated yet, fail
    closed: an invalid one is marked so, with its findings, and never uploaded."""
    return _validate_efactura(runtime, cycle_id, run_id, progress)


def validate_efactura_chunk(
    runtime: Runtime, ref: ChunkRef, run_id: str, progress: Progress = NO_PROGRESS
) -> efactura.ValidationResult:
    """Validate the e-Factura XMLs of one chunk's invoices that are not validated yet (the
    cycle run's part of it: what it leaves, the e-Factura DAG validates)."""
    customer_ids = read_chunk_customer_ids(runtime.staging, ref)
    return _validate_efactura(runtime, ref.cycle_id, run_id, progress, ref.number, customer_ids)


def _validate_efactura(
    runtime: Runtime,
    cycle_id: str | None,
    run_id: str | None,
    progress: Progress,
    part: int = 0,
    customer_ids: Sequence[str] | None = None,
) -> efactura.ValidationResult:
    with _timed(runtime, run_id, "efactura_validate", part) as done, \
            runtime.validator_processes() as validators:  # fmt: skip
        result = efactura.validate_pending(
            runtime.ledger, runtime.archive, cycle_id, validators,
            runtime.settings.render_processes, progress, customer_ids,
        )  # fmt: skip
        done.items = result.valid + result.invalid
    return result


def submit_efactura(
    runtime: Runtime, cycle_id: str | None = None, progress: Progress = NO_PROGRESS
) -> efactura.SubmitResult:
    """Upload the validated XMLs not uploaded yet (nothing when INVOICES_EFACTURA_URL is
    unset: a result of zeros)."""
    client = runtime.efactura_client
    if client is None:
        return efactura.SubmitResult()
    return efactura.submit_pending(runtime.ledger, runtime.archive, client, cycle_id, progress)


def sync_efactura(runtime: Runtime) -> efactura.SyncResult:
    """Track the uploads to ANAF's answer, and find the unanswered ones in its message list."""
    client = runtime.efactura_client
    if client is None:
        return efactura.SyncResult()
    return efactura.sync(runtime.ledger, runtime.archive, client, runtime.settings.retention_years)


def efactura_status(
    runtime: Runtime, cycle_id: str | None = None, today: date | None = None
) -> dict:
    """The e-Factura XMLs by state, the first invalid ones with the rules they break, and the
    invoices not accepted yet whose reporting deadline is a working day away or past
    (`deadlines`, counted from `today`, by default Bucharest's date)."""
    today = today or datetime.now(ZoneInfo(TIMEZONE)).date()
    return efactura.status(runtime.ledger, cycle_id) | {
        "deadlines": efactura.deadlines(runtime.ledger, today, cycle_id)
    }


def notify_chunk(
    runtime: Runtime,
    ref: ChunkRef,
    run_id: str,
    channels: tuple[str, ...] = CHANNELS,
    progress: Progress = NO_PROGRESS,
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
        "sms": lambda: sms_channel(runtime.sms, supplier, runtime.settings.portal_url or None),
    }
    lease = timedelta(seconds=runtime.settings.notify_lease_seconds)
    results = {}
    for name in channels:
        with _timed(runtime, run_id, f"notify_{name}", ref.number) as done:
            results[name] = result = notify_invoices(
                engine, archive, ref.cycle_id, customer_ids, builders[name](), run_id,
                lease=lease, progress=progress,
            )  # fmt: skip
            done.items = result.sent + result.failed + result.pending
    return results


def notify_cycle(
    runtime: Runtime,
    cycle_id: str,
    run_id: str,
    channels: tuple[str, ...] = CHANNELS,
    progress: Progress = NO_PROGRESS,
) -> dict[str, NotifyResult]:
    """Send every chunk's unsent notices in this process."""
    totals = {name: NotifyResult() for name in channels}
    for ref in staged_chunks(runtime, cycle_id):
        for name, result in notify_chunk(runtime, ref, run_id, channels, progress).items():
            totals[name] += result
    return totals


def resend_failed(
    runtime: Runtime, cycle_id: str, run_id: str, channels: tuple[str, ...] = CHANNELS
) -> dict[str, NotifyResult]:
    """Put the cycle's failed notices back in the outbox and send them; sent ones stay sent."""
    resending.reset_failed(runtime.ledger, cycle_id, channels)
    return notify_cycle(runtime, cycle_id, run_id, channels)


def print_cycle(runtime: Runtime, cycle_id: str, run_id: str) -> PrintResult:
    """Put the cycle's paper invoices that are in no batch yet into the print batch, in parts
    of at most `INVOICES_PRINT_BATCH_SIZE` invoices, merged by the render processes."""
    with _timed(runtime, run_id, "print_batch") as done, \
            runtime.render_processes() as builders:  # fmt: skip
        result = print_pending(
            runtime.ledger, runtime.archive, cycle_id, run_id, runtime.settings.retention_years,
            runtime.settings.print_batch_size, builders, runtime.settings.render_processes,
        )  # fmt: skip
        done.items = result.queued
    return result


def start_run(runtime: Runtime, cycle_id: str, run_id: str) -> datetime:
    """Record that a run of the cycle started (again, on a retry); returns its start time."""
    return reporting.start_run(runtime.ledger, cycle_id, run_id)


def finalize_report(runtime: Runtime, cycle_id: str, run_id: str) -> dict:
    """Write the cycle manifest and the run report; the report also goes to the run's row."""
    return reporting.finalize_report(
        runtime.ledger, runtime.archive, runtime.staging, cycle_id, run_id,
        runtime.settings.retention_years,
    )  # fmt: skip


def format_report(report: dict) -> str:
    """The run report as the plain-text tables ops read in the task log and `invoices report`."""
    return report_text.format_report(report)


def load_report(runtime: Runtime, cycle_id: str, run_id: str | None = None) -> dict:
    """A stored run report: the given run's, or the one that finished last."""
    archive = runtime.archive
    if run_id:
        keys = [report_key(cycle_id, run_id)]
    else:
        keys = [k for k in archive.list(reports_prefix(cycle_id)) if k.endswith(".json")]
    reports = []
    for key in keys:
        try:
            reports.append(json.loads(archive.get(key)))
        except FileNotFoundError:
            pass
    if not reports:
        raise InputError(
            f"{archive.url}/{reports_prefix(cycle_id)}", "no run report for this cycle"
        )
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


def last_invoices(runtime: Runtime, customer_id: str, periods: bool = False) -> list[dict]:
    """The customer's last six invoices, newest first, with links (`invoices view --json`);
    with `periods`, each with its billed period too (the self-service page)."""
    return view.last_invoices(
        runtime.ledger, runtime.archive, customer_id,
        expires_in=runtime.settings.link_expiry_seconds, periods=periods,
    )  # fmt: skip


def export_preference_changes(runtime: Runtime, since: datetime | None = None) -> Iterator[str]:
    """The preference changes customers made at or after `since` (all without it), as CSV text
    for the billing system to import (`invoices preferences export`), line by line."""
    return preference_export.export_changes(runtime.ledger, since)


def archive_lifecycle(runtime: Runtime, days: int, storage_class: str) -> dict:
    """Put the S3 lifecycle rule that moves invoices older than `days` to `storage_class`."""
    from storage.archive.s3 import apply_lifecycle

    archive = runtime.archive
    return apply_lifecycle(archive.client, archive.bucket, archive.prefix, days, storage_class)


def run_cycle(
    runtime: Runtime,
    cycle_id: str,
    run_id: str | None = None,
    send_notices: bool = True,
    progress_for: Callable[[str], Progress] | None = None,
) -> dict:
    """Run every stage of one cycle in this process (what the DAG does, without Airflow);
    `progress_for(stage)` gives what shows each stage's progress (`invoices run`: a bar)."""
    run_id = run_id or new_run_id()
    shown = progress_for or (lambda stage: NO_PROGRESS)
    start_run(runtime, cycle_id, run_id)
    stage(runtime, cycle_id, run_id=run_id)
    issue(runtime, cycle_id, run_id, shown("issue"))
    archive_cycle(runtime, cycle_id, run_id, shown("render_archive"))
    validate_efactura(runtime, cycle_id, run_id, shown("efactura_validate"))
    if send_notices:  # paper is a message to the customer too
        for channel in CHANNELS:
            notify_cycle(runtime, cycle_id, run_id, (channel,), shown(f"notify_{channel}"))
        print_cycle(runtime, cycle_id, run_id)
    return finalize_report(runtime, cycle_id, run_id)
