"""Verify one cycle's archive on demand (auditors): every object against the manifest, the
manifest chain and the ledger, and the series for gaps.

A thin wrapper on `billing.stages.audit.verify_cycle` (the `invoices audit verify` command): the task
fails, listing every problem in its log, unless everything agrees.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id="invoice_audit_verify",
    description="Verify a cycle's archive against its manifest, the chain and the ledger",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="Europe/Bucharest"),
    catchup=False,
    default_args={"owner": "audit", "retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["billing", "invoices", "audit"],
    params={"cycle_id": Param(type="string", description="Cycle to verify, e.g. 2026-11.")},
)
def invoice_audit_verify():
    @task
    def verify() -> str:
        import logging

        from airflow.sdk.exceptions import AirflowFailException
        from airflow_runtime import fail_fast, task_runtime

        from billing import pipeline

        cycle_id = get_current_context()["params"]["cycle_id"]
        # S3 through the INVOICES_AWS_CONN_ID connection when set (read-only is enough)
        with fail_fast():
            problems = pipeline.verify_archive(task_runtime(), cycle_id)
        for problem in problems:
            logging.getLogger(__name__).error("%s", problem)
        if problems:
            # the archive will not mend itself: no retry
            raise AirflowFailException(f"cycle {cycle_id}: {len(problems)} problem(s), see the log")
        return f"cycle {cycle_id}: archive, manifest chain and ledger agree"

    verify()


invoice_audit_verify()
