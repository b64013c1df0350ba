"""Invoice cycle: stage the billing export, issue invoices, render and archive their PDFs and
send the e-mail / SMS notices (each one mapped task per chunk), put the paper invoices into a
print batch, write the cycle manifest and the run report.

Thin wiring only: every task builds settings from the environment and calls one function of
`billing.pipeline`. Tasks pass small descriptors (cycle id, counts), never data or file paths.
Imports of the product happen inside the tasks, so parsing this file stays fast.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

log = logging.getLogger(__name__)

DEFAULT_ARGS = {
    "owner": "billing-ops",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def _settings():
    """Settings from the environment; S3 through an Airflow AWS connection when
    INVOICES_AWS_CONN_ID names one (looked up at run time, never while parsing)."""
    import os
    from dataclasses import replace

    from billing.config import Settings

    settings = Settings.from_env()
    conn_id = os.environ.get("INVOICES_AWS_CONN_ID", "").strip()
    if conn_id:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from storage.s3_archive import CLIENT_CONFIG

        hook = S3Hook(aws_conn_id=conn_id, config=CLIENT_CONFIG)
        settings = replace(settings, s3_client=hook.get_conn())
    return settings


def _sends_notices(context) -> bool:
    """Customers hear of a run's invoices (e-mail, SMS, paper) unless the send_notices param
    says no; a backfill run sends nothing unless the param says yes."""
    wanted = context["params"].get("send_notices")
    return wanted if wanted is not None else context["dag_run"].run_type != "backfill"


@contextmanager
def _fail_fast():
    """Bad input or configuration will not mend itself: fail the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from billing.errors import ConfigurationError, CycleConflictError, InputError

    try:
        yield
    except (InputError, ConfigurationError, CycleConflictError) as exc:
        raise AirflowFailException(str(exc)) from exc


@dag(
    dag_id="invoice_cycle",
    description="Issue, archive and notify one billing cycle",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="Europe/Bucharest"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["billing", "invoices"],
    params={
        "cycle_id": Param(
            None,
            type=["null", "string"],
            description="Cycle to bill (folder under INVOICES_SOURCE_URL), e.g. 2026-11.",
        ),
        "send_notices": Param(
            None,
            type=["null", "boolean"],
            description="Send e-mail/SMS notices. Default: yes, except for backfill runs.",
        ),
    },
)
def invoice_cycle():
    @task
    def stage() -> dict:
        from billing import pipeline
        from billing.cycles import resolve_cycle_id

        context = get_current_context()
        # A manual run bills the cycle its param names; only scheduled and backfill runs take
        # the cycle from the period they cover.
        manual = context["dag_run"].run_type == "manual"
        interval_end = None if manual else context.get("data_interval_end")
        with _fail_fast():
            cycle_id = resolve_cycle_id(
                context["params"].get("cycle_id"), interval_end.date() if interval_end else None
            )
            settings = _settings()
            pipeline.start_run(settings, cycle_id, context["run_id"])
            staged = pipeline.stage(settings, cycle_id)
        # at most 1024 chunks (Airflow's max_map_length): staging sizes chunks to fit
        return {"cycle_id": cycle_id, "chunks": [ref.as_dict() for ref in staged.chunks]}

    @task
    def issue(staged: dict) -> list[dict]:
        """Issue every chunk in order (numbers follow the chunks); pass the chunks on."""
        from billing import pipeline

        pipeline.issue(_settings(), staged["cycle_id"], get_current_context()["run_id"])
        return staged["chunks"]

    @task(map_index_template="{{ chunk_label }}")
    def render_archive(chunk: dict) -> int:
        from billing import pipeline
        from billing.model import ChunkRef

        ref = ChunkRef.from_dict(chunk)
        context = get_current_context()
        context["chunk_label"] = f"chunk {ref.chunk} of {ref.chunks}"
        return pipeline.archive_chunk(_settings(), ref, context["run_id"]).archived

    @task(map_index_template="{{ chunk_label }}")
    def notify(chunk: dict) -> dict:
        """Send the chunk's notices from the outbox; backfills send none unless asked."""
        from billing import pipeline
        from billing.model import ChunkRef

        ref = ChunkRef.from_dict(chunk)
        context = get_current_context()
        context["chunk_label"] = f"chunk {ref.chunk} of {ref.chunks}"
        if not _sends_notices(context):
            log.info("notices of chunk %s not sent: send_notices is off for this run", ref.chunk)
            return {}
        results = pipeline.notify_chunk(_settings(), ref, context["run_id"])
        return {name: vars(result) for name, result in results.items()}

    @task
    def print_batch(staged: dict) -> dict:
        """The cycle's paper invoices not yet in a batch, merged by postal code, for the printer."""
        from billing import pipeline

        context = get_current_context()
        if not _sends_notices(context):
            log.info("no print batch: send_notices is off for this run")
            return {"queued": 0, "batch": None}
        result = pipeline.print_cycle(_settings(), staged["cycle_id"], context["run_id"])
        return {"queued": result.queued, "batch": result.batch}

    @task
    def report(staged: dict) -> str:
        """Counts come from the ledger, so retried or re-run tasks are counted once."""
        from billing import pipeline

        result = pipeline.finalize_report(
            _settings(), staged["cycle_id"], get_current_context()["run_id"]
        )
        return pipeline.report_key(result["cycle_id"], result["run_id"])

    staged = stage()
    chunks = issue(staged)
    archived = render_archive.expand(chunk=chunks)
    notified = notify.expand(chunk=chunks)
    archived >> [notified, print_batch(staged)] >> report(staged)


invoice_cycle()
