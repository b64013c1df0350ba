"""Re-send the failed e-mail / SMS notices of one cycle (ops, on demand).

A thin wrapper on `billing.pipeline.resend_failed` (the `invoices notices resend` command):
notices already sent are never selected, so running it twice sends nothing twice.
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
    @task
    def resend() -> dict:
        from billing import pipeline
        from billing.config import Settings

        context = get_current_context()
        params = context["params"]
        results = pipeline.resend_failed(
            Settings.from_env(), params["cycle_id"], context["run_id"], tuple(params["channels"])
        )
        return {name: vars(result) for name, result in results.items()}

    resend()


invoice_resend_failed()
