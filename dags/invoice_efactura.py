"""RO e-Factura: validate the XMLs the cycle runs archived, upload the valid ones to ANAF, track
each upload to ANAF's answer, and fail loudly while an invoice not accepted yet is a working day
or less from its reporting deadline, or past it.

Every 15 minutes (Bucharest time), and as soon as a cycle run ends: the cycle DAG's report task
updates the asset `invoices_efactura_pending`. Without INVOICES_EFACTURA_URL the run validates
and checks the deadlines only. Thin wiring: each task calls one function of `billing.pipeline`
(the `invoices efactura` commands call the same ones).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from billing.domain.cycles import TIMEZONE

log = logging.getLogger(__name__)

# The same asset the cycle DAG's report task names as its outlet.
EFACTURA_PENDING = Asset(name="invoices_efactura_pending", uri="invoices://efactura/pending")


@dag(
    dag_id="invoice_efactura",
    description="Validate, upload and track the invoices' e-Factura XMLs; watch the deadline",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/15 * * * *", timezone=TIMEZONE),
        assets=[EFACTURA_PENDING],
    ),
    start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "billing-ops",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
    },
    tags=["billing", "invoices", "efactura"],
)
def invoice_efactura():
    @task
    def validate() -> dict:
        """Fail closed: an XML that breaks a rule is marked invalid and never uploaded."""
        from airflow_runtime import fail_fast, task_runtime

        from billing import pipeline

        with fail_fast():
            result = pipeline.validate_efactura(task_runtime(), None)
        return vars(result)

    @task
    def submit() -> dict:
        from airflow_runtime import fail_fast, task_runtime

        from billing import pipeline

        with fail_fast():
            result = pipeline.submit_efactura(task_runtime())
        if result.rate_limited:
            log.warning("ANAF's rate limit reached: the rest goes in the next run")
        return vars(result)

    @task
    def sync() -> dict:
        from airflow_runtime import fail_fast, task_runtime

        from billing import pipeline

        with fail_fast():
            result = pipeline.sync_efactura(task_runtime())
        return vars(result)

    @task
    def deadlines() -> dict:
        """Every invalid XML and every invoice close to or past its deadline goes to the log;
        a deadline fails the run (no retry: only reporting mends it)."""
        from airflow.sdk.exceptions import AirflowFailException
        from airflow_runtime import fail_fast, task_runtime

        from billing import pipeline

        with fail_fast():
            status = pipeline.efactura_status(task_runtime())
        for invalid in status["invalid"]:
            log.error("%s (%s) is invalid: %s", invalid["number"], invalid["cycle_id"],
                      "; ".join(invalid["rules"]))  # fmt: skip
        for late in status["deadlines"]:
            log.error(
                "issued %s, due at ANAF by %s (%d working day(s) left): %d invoice(s) not "
                "accepted %s, first %s", late["issue_date"], late["deadline"],
                late["working_days_left"], late["invoices"], late["states"], late["first"],
            )  # fmt: skip
        if status["deadlines"]:
            raise AirflowFailException(
                f"{sum(d['invoices'] for d in status['deadlines'])} invoice(s) at or past "
                "their e-Factura deadline: see the log"
            )
        return status["states"]

    validate() >> submit() >> sync() >> deadlines()


invoice_efactura()
