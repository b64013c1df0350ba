"""Invoice cycle: stage the billing export, issue invoices, render and archive their PDFs and
e-Factura XMLs, validate the XMLs and send the e-mail and SMS notices (mapped tasks per chunk),
put the paper invoices into a print batch, write the cycle manifest and the run report.

One DAG per bill-cycle day (`INVOICES_BILL_CYCLE_DAYS`, default 1): `invoice_cycle` for the 1st,
`invoice_cycle_d08` for the 8th, ... Each is scheduled at local midnight of its day in
Europe/Bucharest with a data interval that is exactly the month it bills; scheduled and backfill
runs take the cycle from that interval, manual runs from the `cycle_id` param.

Thin wiring only: every task takes its process's `Runtime` (`airflow_runtime.task_runtime`) and
calls one function of `billing.pipeline`, failing at once on errors retrying cannot mend.
Tasks pass small descriptors (cycle id, chunk bounds), never data or file paths. The product's
modules and the Airflow hooks are imported inside the tasks, so parsing this file stays fast and
looks up no connection.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task

from billing.domain.cycles import TIMEZONE, bill_cycle_days, cron_for, dag_id_for

log = logging.getLogger(__name__)

# Airflow pools (`make pools`) cap how many chunks send at once across every running cycle.
SMTP_POOL = "invoices_smtp"
SMS_POOL = "invoices_sms"
# A finished cycle run updates it: the invoice_efactura DAG then validates and uploads its XMLs.
EFACTURA_PENDING = Asset(name="invoices_efactura_pending", uri="invoices://efactura/pending")

DEFAULT_ARGS = {
    "owner": "billing-ops",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def _sends_notices(context) -> bool:
    """Customers hear of a run's invoices (e-mail, SMS, paper) unless the send_notices param
    says no; a backfill run sends nothing unless the param says yes."""
    wanted = context["params"].get("send_notices")
    return wanted if wanted is not None else context["dag_run"].run_type != "backfill"


def invoice_cycle_dag(day: int, scheduled: bool = True):
    """The DAG of one bill-cycle day; `scheduled=False` makes it manual-only."""

    @dag(
        dag_id=dag_id_for(day),
        description=f"Issue, archive and notify the bill cycle of day {day} of the month",
        schedule=CronDataIntervalTimetable(cron_for(day), timezone=TIMEZONE) if scheduled else None,
        start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["billing", "invoices", f"bill-day-{day:02d}"],
        params={
            "cycle_id": Param(
                None,
                type=["null", "string"],
                description="Manual runs: the cycle to bill (folder under INVOICES_SOURCE_URL), "
                "e.g. 2026-11. Scheduled and backfill runs bill their data interval.",
            ),
            "send_notices": Param(
                None,
                type=["null", "boolean"],
                description="Send e-mail/SMS notices and the print batch. Default: yes, except "
                "for backfill runs.",
            ),
        },
    )
    def invoice_cycle():
        @task
        def stage() -> dict:
            from airflow_runtime import fail_fast, task_runtime

            from billing import pipeline
            from billing.domain.cycles import resolve_cycle

            context = get_current_context()
            # Scheduled and backfill runs bill the period of their data interval. Any other run
            # (manual, or triggered by an operator or an asset) bills the cycle its param names:
            # Airflow infers an interval for those too, which means nothing here.
            automated = context["dag_run"].run_type in ("scheduled", "backfill")
            interval = (
                (context["data_interval_start"], context["data_interval_end"])
                if automated and context.get("data_interval_end") is not None
                else None
            )
            with fail_fast():
                cycle_id, period = resolve_cycle(context["params"].get("cycle_id"), interval)
                if period:
                    log.info("run bills cycle %s: %s to %s", cycle_id, period.start, period.end)
                runtime = task_runtime()
                pipeline.start_run(runtime, cycle_id, context["run_id"])
                staged = pipeline.stage(runtime, cycle_id, period, run_id=context["run_id"])
            # at most 1024 chunks (Airflow's max_map_length): staging sizes chunks to fit
            return {"cycle_id": cycle_id, "chunks": [ref.as_dict() for ref in staged.chunks]}

        @task
        def issue(staged: dict) -> list[dict]:
            """Issue every chunk in order (numbers follow the chunks); pass the chunks on."""
            from airflow_runtime import fail_fast, task_runtime

            from billing import pipeline

            run_id = get_current_context()["run_id"]
            with fail_fast():
                pipeline.issue(
                    task_runtime(), staged["cycle_id"], run_id, pipeline.LogProgress("issue")
                )
            return staged["chunks"]

        @task(map_index_template="{{ chunk_label }}")
        def render_archive(chunk: dict) -> int:
            from airflow_runtime import fail_fast, task_runtime

            from billing import pipeline
            from billing.domain.model import ChunkRef

            ref = ChunkRef.from_dict(chunk)
            context = get_current_context()
            context["chunk_label"] = label = f"chunk {ref.number} of {ref.total}"
            progress = pipeline.LogProgress(f"render_archive {label}")
            with fail_fast():
                return pipeline.archive_chunk(
                    task_runtime(), ref, context["run_id"], progress
                ).archived

        @task(map_index_template="{{ chunk_label }}")
        def validate_efactura(chunk: dict) -> dict:
            """Check the chunk's e-Factura XMLs in ANAF's three layers, fail closed: one that
            breaks a rule is marked invalid (the report counts it) and never uploaded."""
            from airflow_runtime import fail_fast, task_runtime

            from billing import pipeline
            from billing.domain.model import ChunkRef

            ref = ChunkRef.from_dict(chunk)
            context = get_current_context()
            context["chunk_label"] = label = f"chunk {ref.number} of {ref.total}"
            with fail_fast():
                result = pipeline.validate_efactura_chunk(
                    task_runtime(), ref, context["run_id"],
                    pipeline.LogProgress(f"efactura_validate {label}"),
                )  # fmt: skip
            return vars(result)

        def _notify(chunk: dict, channel: str) -> dict:
            """Send one channel's notices of the chunk from the outbox; backfills send none
            unless asked."""
            from airflow_runtime import fail_fast, task_runtime

            from billing import pipeline
            from billing.domain.model import ChunkRef

            ref = ChunkRef.from_dict(chunk)
            context = get_current_context()
            context["chunk_label"] = label = f"chunk {ref.number} of {ref.total}"
            if not _sends_notices(context):
                log.info("%s of chunk %s not sent: send_notices is off", channel, ref.number)
                return {}
            with fail_fast():
                results = pipeline.notify_chunk(
                    task_runtime(), ref, context["run_id"], (channel,),
                    pipeline.LogProgress(f"notify_{channel} {label}"),
                )  # fmt: skip
            return {name: vars(result) for name, result in results.items()}

        @task(map_index_template="{{ chunk_label }}", pool=SMTP_POOL)
        def notify_email(chunk: dict) -> dict:
            return _notify(chunk, "email")

        @task(map_index_template="{{ chunk_label }}", pool=SMS_POOL)
        def notify_sms(chunk: dict) -> dict:
            return _notify(chunk, "sms")

        # Runs after mapped tasks that were skipped too: a cycle whose every customer was
        # quarantined has no chunk to map over, and must still end with its batch and report.
        @task(trigger_rule="none_failed")
        def print_batch(staged: dict) -> dict:
            """The cycle's paper invoices not yet in a batch, merged by postal code."""
            from airflow_runtime import fail_fast, task_runtime

            from billing import pipeline

            context = get_current_context()
            if not _sends_notices(context):
                log.info("no print batch: send_notices is off for this run")
                return {"queued": 0, "batch": None}
            with fail_fast():
                result = pipeline.print_cycle(task_runtime(), staged["cycle_id"], context["run_id"])
            return {"queued": result.queued, "batch": result.batch, "parts": list(result.parts)}

        @task(trigger_rule="none_failed", outlets=[EFACTURA_PENDING])
        def report(staged: dict) -> str:
            """Manifest and run report, logged as a table. Counts come from the ledger, so
            retried or re-run tasks are counted once."""
            from airflow_runtime import fail_fast, task_runtime

            from billing import pipeline

            with fail_fast():
                result = pipeline.finalize_report(
                    task_runtime(), staged["cycle_id"], get_current_context()["run_id"]
                )
            log.info("run report\n%s", pipeline.format_report(result))
            return pipeline.report_key(result["cycle_id"], result["run_id"])

        staged = stage()
        chunks = issue(staged)
        archived = render_archive.expand(chunk=chunks)
        sent = [notify_email.expand(chunk=chunks), notify_sms.expand(chunk=chunks)]
        finished = report(staged)
        archived >> sent >> finished
        archived >> validate_efactura.expand(chunk=chunks) >> finished
        archived >> print_batch(staged) >> finished

    return invoice_cycle()


_DAYS = bill_cycle_days(os.environ)
invoice_cycle_dag(1, scheduled=1 in _DAYS)  # `make run` and manual runs use invoice_cycle
for _day in _DAYS:
    if _day != 1:
        invoice_cycle_dag(_day)
