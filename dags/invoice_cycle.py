"""Invoice cycle: stage the billing export, issue invoices, write the run report.

Thin wiring only: every task builds settings from the environment and calls one function of
`billing.pipeline`. Tasks pass small descriptors (cycle id, counts), never data or file paths.
Imports of the product happen inside the tasks, so parsing this file stays fast.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

DEFAULT_ARGS = {
    "owner": "billing-ops",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def _settings():
    from billing.config import Settings

    return Settings.from_env()


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
        return {"cycle_id": cycle_id, "chunks": len(staged.chunks)}

    @task
    def issue(staged: dict) -> dict:
        from billing import pipeline

        result = pipeline.issue(_settings(), staged["cycle_id"], get_current_context()["run_id"])
        return {"issued": result.issued, "existing": result.existing}

    @task
    def report(staged: dict, issued: dict) -> str:
        from billing import pipeline
        from billing.issuing import IssueResult
        from billing.staging import load_staged
        from storage.blobs import open_store

        settings = _settings()
        cycle = load_staged(open_store(settings.staging_url), staged["cycle_id"])
        result = pipeline.finalize_report(
            settings, cycle, IssueResult(**issued), get_current_context()["run_id"]
        )
        return pipeline.report_key(result["cycle_id"], result["run_id"])

    staged = stage()
    report(staged, issue(staged))


invoice_cycle()
