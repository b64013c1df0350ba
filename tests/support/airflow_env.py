"""The environment the DAG tests give Airflow: its own home, the project's DAGs, no examples,
and none of the caller's INVOICES_* or AIRFLOW* settings."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.paths import REPO


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOICES_", "AIRFLOW"))}
    env.update(
        INVOICES_HOME=str(home),
        AIRFLOW_HOME=str(home / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # as the Makefile sets them
        AIRFLOW__CORE__DEFAULT_TIMEZONE="Europe/Bucharest",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS="billing.airflow_db.CONNECT_ARGS",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC="billing.airflow_db.CONNECT_ARGS",
    )
    env.update(extra)
    return env
