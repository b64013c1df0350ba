"""The end of a run: the cycle manifest, the run report (contract 4) and the run's ledger row.

Every count is read back from the ledger and the staged cycle, so a retried or re-run task is
counted once. The report leaves out recipients and quarantine details (they may quote an
e-mail address or a phone number); failure reasons have contacts masked.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.layout import report_key
from billing.domain.notices import FAILED, MESSAGE_CHANNELS, REPORTED_AS, Channel, NoticeStatus
from billing.stages import efactura
from billing.stages.archiving import finalize_manifest
from billing.stages.report_text import mask_contacts, pick_examples, safe_customer_id
from billing.stages.staging import load_staged
from storage.archive import Archive
from storage.blobs import BlobStore
from storage.ledger import efactura_documents, invoice_documents, invoices, notices, runs
from storage.timings import stage_spans

log = logging.getLogger(__name__)


def start_run(engine: Engine, cycle_id: str, run_id: str) -> datetime:
    """Record that a run of the cycle started (again, on a retry); returns its start time."""
    with engine.begin() as conn:
        found = conn.execute(sa.select(runs.c.started_at).where(runs.c.run_id == run_id)).first()
        if found:
            return found.started_at.replace(tzinfo=found.started_at.tzinfo or UTC)
        now = datetime.now(UTC)
        conn.execute(
            runs.insert().values(run_id=run_id, cycle_id=cycle_id, started_at=now, status="running")
        )
        return now


def cycle_counts(engine: Engine, cycle_id: str, run_id: str) -> dict:
    """Invoices of the cycle (those this run issued, and all) and the cycle's totals."""
    engine = engine
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


def notice_counts(engine: Engine, cycle_id: str) -> dict:
    """The cycle's outbox by channel and state, paper invoices queued, and fallbacks."""
    with engine.connect() as conn:
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
    counts = {ch: {"sent": 0, "failed": 0, "pending": 0} for ch in MESSAGE_CHANNELS}
    paper = 0
    for channel, status, count in rows:
        if channel == Channel.PAPER:
            paper += count
        else:
            counts[channel][REPORTED_AS[NoticeStatus(status)]] += count
    return {"notices": counts, "paper_queued": paper, "fallbacks": fallbacks}


def document_counts(engine: Engine, cycle_id: str, run_id: str) -> dict[str, int]:
    """The cycle's PDFs as the run report counts them, like its invoices:

    - `pdfs_archived`: rendered and written to the archive by this run;
    - `pdfs_existing`: found archived already, in the ledger or (without a ledger row, left by
      a run that crashed before recording them) in the archive;
    - `pdfs_recovered`: those of `pdfs_existing` found in the archive and recorded by this run.

    `pdfs_archived + pdfs_existing` is every archived PDF of the cycle. `efactura_xmls`: the
    cycle's archived e-Factura XMLs; `efactura_missing`: its invoices without one. Of the XMLs,
    `efactura_valid` passed ANAF's three layers, `efactura_invalid` break a rule (never
    uploaded) and `efactura_unvalidated` are not validated yet.
    """
    # One labelled expression in both clauses: PostgreSQL matches GROUP BY to the select list
    # by its text, and two separate comparisons would bind run_id under two names.
    by_this_run = (invoice_documents.c.run_id == run_id).label("by_this_run")
    recovered = invoice_documents.c.recovered
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(by_this_run, recovered, sa.func.count())
            .where(invoice_documents.c.cycle_id == cycle_id)
            .group_by(by_this_run, recovered)
        ).all()
        xml = efactura_documents.c
        xmls, missing, invalid, unvalidated = conn.execute(
            sa.select(sa.func.count(xml.number),
                      sa.func.count().filter(xml.number.is_(None)),
                      sa.func.count().filter(xml.state == "invalid"),
                      sa.func.count().filter(xml.number.is_not(None), xml.validated_at.is_(None)))
            .select_from(invoices.outerjoin(efactura_documents))
            .where(invoices.c.cycle_id == cycle_id)
        ).one()  # fmt: skip
    counts = {(bool(mine), bool(found)): count for mine, found, count in rows}
    archived = counts.get((True, False), 0)
    return {
        "pdfs_archived": archived,
        "pdfs_existing": sum(counts.values()) - archived,
        "pdfs_recovered": counts.get((True, True), 0),
        "efactura_xmls": xmls,
        "efactura_valid": xmls - invalid - unvalidated,
        "efactura_invalid": invalid,
        "efactura_unvalidated": unvalidated,
        "efactura_missing": missing,
    }


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


def failure_summary(engine: Engine, cycle_id: str) -> dict:
    """The cycle's failed notices (for good, or to be retried) by reason, with examples; never
    their recipients."""
    failed = sa.and_(notices.c.cycle_id == cycle_id, notices.c.status.in_(FAILED))
    with engine.connect() as conn:
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


def run_warnings(report: dict) -> list[str]:
    """What ops must look at even though the run succeeded: above all a cycle that invoices
    nobody, which is a valid outcome (the run ends, with its report) but never a normal one."""
    warnings = []
    invoiced = report["invoices_issued"] + report["invoices_existing"]
    if invoiced == 0:
        if report["customers"] == 0:
            warnings.append("no invoice: the export lists no customer")
        else:
            warnings.append(
                f"no invoice: all {report['customers']} customers were quarantined "
                f"(see {report['quarantine_report']})"
            )
    elif report["quarantined_customers"] * 2 > report["customers"]:
        warnings.append(
            f"{report['quarantined_customers']} of {report['customers']} customers were "
            "quarantined: check the export before the next run"
        )
    if report.get("efactura_missing"):
        warnings.append(
            f"{report['efactura_missing']} invoice(s) have no e-Factura XML, so they cannot be "
            "reported to ANAF: run the cycle again (the render_archive log names the cause)"
        )
    if report.get("efactura_invalid"):
        warnings.append(
            f"{report['efactura_invalid']} e-Factura XML(s) break ANAF's rules and will not be "
            f"uploaded: `invoices efactura status {report['cycle_id']}` names them and the rules"
        )
    return warnings


def run_timings(
    engine: Engine,
    run_id: str,
    started_at: datetime,
    report_started: datetime,
    finished_at: datetime,
    report: dict,
) -> dict:
    """The report's `timings` (each stage's span in seconds, from its first part's start to its
    last part's end, then `report` and the run's `total`), `rate` (invoices of the cycle per
    second end to end) and, per stage, `throughput`: items, parts, seconds, the parts' own
    seconds added up (above the span when parts ran in parallel) and items per second."""
    spans = stage_spans(engine, run_id)
    total = (finished_at - started_at).total_seconds()
    timings = {span.stage: round(span.seconds, 3) for span in spans}
    timings["report"] = round((finished_at - report_started).total_seconds(), 3)
    timings["total"] = round(total, 3)
    invoiced = report["invoices_issued"] + report["invoices_existing"]
    throughput = {
        span.stage: {
            "items": span.items,
            "parts": span.parts,
            "seconds": round(span.seconds, 3),
            "busy_seconds": round(span.busy_seconds, 3),
            "per_second": round(span.items / span.seconds, 1) if span.seconds > 0 else None,
        }
        for span in spans
    }
    return {
        "timings": timings,
        "rate": round(invoiced / total, 2) if total > 0 else None,
        "throughput": throughput,
    }


def finalize_report(
    engine: Engine,
    archive: Archive,
    staging: BlobStore,
    cycle_id: str,
    run_id: str,
    retention_years: int,
) -> dict:
    """Write the cycle manifest and the run report (contract 4); the report also goes to the
    ledger's run row. Every count is read back from the ledger and staging, so a retried or
    re-run task is counted once."""
    report_started = datetime.now(UTC)
    started_at = start_run(engine, cycle_id, run_id)
    staged = load_staged(staging, cycle_id)
    manifest = finalize_manifest(engine, archive, cycle_id, retention_years)
    counts = cycle_counts(engine, cycle_id, run_id)
    documents = document_counts(engine, cycle_id, run_id)
    quarantine_key = report_key(cycle_id, run_id, ".quarantine.csv")
    quarantine_csv = staging.read_bytes(f"{cycle_id}/quarantine.csv")
    archive.replace(quarantine_key, quarantine_csv)
    quarantine = quarantine_summary(quarantine_csv)
    failures = failure_summary(engine, cycle_id)
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
        **documents,
        **notice_counts(engine, cycle_id),
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
        "efactura_invalid_examples": (
            efactura.invalid_examples(engine, cycle_id, REPORT_EXAMPLES)
            if documents["efactura_invalid"]
            else []
        ),
    }
    report.update(run_timings(engine, run_id, started_at, report_started, finished_at, report))
    report["warnings"] = run_warnings(report)
    for warning in report["warnings"]:
        log.warning("cycle %s, run %s: %s", cycle_id, run_id, warning)
    body = json.dumps(report, indent=2, ensure_ascii=False)
    archive.replace(report_key(cycle_id, run_id), body.encode("utf-8"))
    with engine.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .values(finished_at=finished_at, status="finished", report=body)
        )
    return report
