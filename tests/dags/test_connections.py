"""Run-time rules of the DAG's tasks: S3 through an Airflow connection when INVOICES_AWS_CONN_ID
names one, and which runs send notices."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest
from airflow_runtime import task_runtime

from tests.support.paths import DAGS

DAG_FILE = DAGS / "invoice_cycle.py"


def test_s3_client_comes_from_the_airflow_connection(s3_bucket, monkeypatch, tmp_path):
    client, bucket = s3_bucket
    endpoint = client.meta.endpoint_url
    # the connection, not boto3's environment, must carry the endpoint and credentials
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("INVOICES_HOME", str(tmp_path))
    monkeypatch.setenv("INVOICES_AWS_CONN_ID", "invoices_s3")
    monkeypatch.setenv(
        "AIRFLOW_CONN_INVOICES_S3",
        json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "eu-central-1"},
        }),
    )  # fmt: skip
    monkeypatch.setenv("INVOICES_ARCHIVE_URL", f"s3://{bucket}/via-connection")
    task_runtime.cache_clear()
    try:
        runtime = task_runtime()
    finally:
        task_runtime.cache_clear()
    assert runtime.settings.s3_client is not None
    assert runtime.s3_client is runtime.settings.s3_client
    stored = runtime.archive.put_once("invoices/C1/OR00000001.pdf", b"%PDF-1.7 test")
    assert (
        client.get_object(Bucket=bucket, Key="via-connection/" + stored.key)["Body"].read()
        == b"%PDF-1.7 test"
    )


def load_dag_module():
    spec = importlib.util.spec_from_file_location("invoice_cycle_dag_rules", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("run_type", "param", "sends"),
    [
        pytest.param("scheduled", None, True, id="scheduled"),
        pytest.param("manual", None, True, id="manual"),
        pytest.param("backfill", None, False, id="backfill-sends-nothing"),
        pytest.param("backfill", True, True, id="backfill-asked-to-send"),
        pytest.param("scheduled", False, False, id="switched-off"),
    ],
)
def test_backfill_runs_send_no_notices_unless_asked(run_type, param, sends):
    context = {"params": {"send_notices": param}, "dag_run": SimpleNamespace(run_type=run_type)}
    assert load_dag_module()._sends_notices(context) is sends
