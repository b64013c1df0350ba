"""`make cluster` on a small cycle: Airflow on the CeleryExecutor (api-server, scheduler,
dag-processor, two Celery workers in folders of their own, moto's S3 server; Redis and
PostgreSQL are the machine's), started once for the module by `billing.cluster` itself on free
ports, with databases, buckets and a Celery queue of its own.

Both workers run chunk tasks, and the outcome (the ledger's invoices and notices, the archive's
objects) is the one an in-process run of the same export gives. The cluster is stopped before
any assertion, and no process of it may be left.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing import pipeline
from billing.cluster import CHUNK_TASKS, Cluster, ClusterRefused, ClusterSettings
from billing.config import Settings
from billing.runtime import Runtime
from sample_data.generator import write_cycle
from storage import ledger

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

CYCLE = "2026-11"
CUSTOMERS = 64
CHUNK_SIZE = 16  # four chunks: twelve chunk tasks for two workers

INVOICES_SQL = (
    "SELECT i.number, i.customer_id, i.total, d.key, d.sha256 FROM invoices i "
    "LEFT JOIN invoice_documents d ON d.number = i.number ORDER BY i.number"
)
NOTICES_SQL = "SELECT number, channel, recipient, status FROM notices ORDER BY number, channel"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The caller's environment less every setting the cluster makes itself."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INVOICES_", "AIRFLOW", "CLUSTER_", "AWS_", "PYTHONPATH"))
    }


def ledger_rows(url: str) -> dict[str, list[tuple]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "invoices": [tuple(r) for r in conn.exec_driver_sql(INVOICES_SQL)],
                "notices": [tuple(r) for r in conn.exec_driver_sql(NOTICES_SQL)],
            }
    finally:
        engine.dispose()


def comparable(objects: dict[str, bytes]) -> dict[str, object]:
    """The archive's objects as the two runs must agree on them: run reports left out (their
    run ids and times differ), manifests without S3 version ids (a folder has none)."""
    found: dict[str, object] = {}
    for key, body in objects.items():
        if key.startswith("reports/"):
            continue
        if key.startswith("manifests/"):
            manifest = json.loads(body)
            manifest.pop("version_id", None)
            for entry in manifest["invoices"]:
                entry.pop("version_id", None)
                entry.get("efactura", {}).pop("version_id", None)
            found[key] = manifest
        else:
            found[key] = body
    return found


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return write_cycle(tmp_path_factory.mktemp("export"), CYCLE, CUSTOMERS, seed=5)


@pytest.fixture(scope="module")
def in_process(export, tmp_path_factory):
    """The same export run in one process on the embedded setup, with the same chunk size."""
    home = tmp_path_factory.mktemp("in-process")
    settings = Settings.from_env(
        {
            "INVOICES_HOME": str(home),
            "INVOICES_SOURCE_URL": str(export.parent),
            "INVOICES_CHUNK_SIZE": str(CHUNK_SIZE),
        }
    )
    report = pipeline.run_cycle(Runtime(settings), CYCLE)
    ledger._engines.pop(settings.ledger_url).dispose()
    archive = home / "archive"
    objects = {
        str(p.relative_to(archive)): p.read_bytes()
        for p in archive.rglob("*")
        if p.is_file() and not p.relative_to(archive).parts[0].startswith(".")
    }
    return {
        "report": report,
        "ledger": ledger_rows(settings.ledger_url),
        "archive": comparable(objects),
        "emails": sorted(p.name for p in (home / "outbox" / "email").iterdir()),
    }


@pytest.fixture(scope="module")
def cluster_run(export, in_process, tmp_path_factory, pg_admin):
    """Start the cluster, run the export on it, read what it made, stop it: that snapshot."""
    tag = uuid.uuid4().hex[:8]
    settings = ClusterSettings(
        root=tmp_path_factory.mktemp("cluster") / "cluster",
        api_port=free_port(),
        s3_port=free_port(),
        pg_url=pg_admin.url.render_as_string(hide_password=False),
        name=f"invoices_ct_{tag}",
        workers=(f"alpha-{tag}", f"beta-{tag}"),
        chunk_size=CHUNK_SIZE,
        base_env=clean_env(),
    )
    cluster = Cluster(settings)
    snapshot: dict = {"settings": settings}
    try:
        cluster.start()
        with pytest.raises(ClusterRefused, match="already running"):
            cluster.start()
        cluster.upload_cycle(export)
        outcome = cluster.run_cycle(CYCLE, timeout=600)
        client, bucket = cluster.s3_client(), settings.archive_bucket
        objects = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                objects[item["Key"].removeprefix("billing/")] = body
        snapshot.update(
            outcome=outcome,
            ledger=ledger_rows(settings.database_url("ledger")),
            archive=comparable(objects),
        )
    finally:
        sessions = cluster.sessions()
        snapshot["stopped"] = cluster.stop()
        snapshot["sessions"] = sessions
        cluster.drop_databases()
    return snapshot


def test_both_workers_run_chunk_tasks(cluster_run, in_process):
    outcome, settings = cluster_run["outcome"], cluster_run["settings"]
    assert outcome.state == "success"
    chunks = in_process["report"]["chunks"]
    assert chunks >= 4
    assert sorted(outcome.chunk_tasks) == sorted(
        (task, index) for task in CHUNK_TASKS for index in range(chunks)
    )
    per_worker = outcome.by_worker()
    assert set(per_worker) == set(settings.workers), per_worker
    assert all(counts.total() > 0 for counts in per_worker.values()), per_worker
    for worker in settings.workers:  # each worker kept its files in its own folder
        assert (settings.root / worker / "airflow" / "logs").is_dir()


def test_the_outcome_is_the_in_process_runs(cluster_run, in_process):
    expected = in_process["ledger"]
    assert len(expected["invoices"]) == in_process["report"]["invoices_issued"] > 0
    assert cluster_run["ledger"]["invoices"] == expected["invoices"]  # numbers, totals, sha256
    assert cluster_run["ledger"]["notices"] == expected["notices"]  # channel, recipient, status
    assert {status for *_, status in expected["notices"]} == {"sent"}
    assert cluster_run["archive"] == in_process["archive"]  # every PDF, manifest, print batch
    report = cluster_run["outcome"].report
    for key in ("invoices_issued", "pdfs_archived", "notices", "paper_queued", "totals"):
        assert report[key] == in_process["report"][key], key


def test_each_worker_sent_from_its_own_folder(cluster_run, in_process):
    """No local file is shared: each worker's file outbox holds the e-mails of its chunks,
    and the two together are the in-process run's."""
    settings = cluster_run["settings"]
    sent = {
        worker: sorted(p.name for p in (settings.root / worker / "home/outbox/email").glob("*"))
        for worker in settings.workers
    }
    assert sorted(name for names in sent.values() for name in names) == in_process["emails"]
    assert not set.intersection(*(set(names) for names in sent.values()))


def test_stop_leaves_no_process(cluster_run):
    from billing.cluster import port_open, session_processes

    settings, sessions = cluster_run["settings"], cluster_run["sessions"]
    assert set(sessions) == {"s3", "api-server", "scheduler", "dag-processor", *settings.workers}
    assert cluster_run["stopped"] == list(sessions)
    assert {
        name: session_processes(sid) for name, sid in sessions.items() if session_processes(sid)
    } == {}
    assert not port_open(settings.api_port) and not port_open(settings.s3_port)
    assert not (settings.root / "sessions.json").exists()


def test_a_taken_port_refuses_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = ClusterSettings(root=tmp_path / "cluster", api_port=taken.getsockname()[1])
        with pytest.raises(ClusterRefused, match=f"port {settings.api_port}"):
            Cluster(settings).start()
    assert not (tmp_path / "cluster").exists()
