"""Re-send the failed e-mail / SMS notices of one cycle (ops, on demand).

A thin wrapper on `billing.pipeline.resend_failed` (the `invoices notices resend` command):
notices already sent are never selected, so running it twice sends nothing twice. Each channel
is a task in the same pool as the cycle's notify tasks, so a resend never adds to the load the
pools allow on the SMTP relay and SNS.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id="invoice_resend_failed",
    description="Send a cycle's failed notices again",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="Europe/Bucharest"),
    catchup=False,
    default_args={"owner": "billing-ops", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["billing", "invoices", "ops"],
    params={
        "cycle_id": Param(type="string", description="Cycle whose failed notices to send again."),
        "channels": Param(
            ["email", "sms"],
            type="array",
            items={"enum": ["email", "sms"]},
            description="Channels.",
        ),
    },
)
def invoice_resend_failed():
    def _resend(channel: str) -> dict:
        from airflow_runtime import fail_fast, task_runtime

        from billing import pipeline

        context = get_current_context()
        params = context["params"]
        if channel not in params["channels"]:
            return {}
        with fail_fast():
            results = pipeline.resend_failed(
                task_runtime(), params["cycle_id"], context["run_id"], (channel,)
            )
        return {name: vars(result) for name, result in results.items()}

    @task(pool="invoices_smtp")
    def resend_email() -> dict:
        return _resend("email")

    @task(pool="invoices_sms")
    def resend_sms() -> dict:
        return _resend("sms")

    resend_email()
    resend_sms()


invoice_resend_failed()
