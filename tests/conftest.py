"""Shared fixtures: real ledgers (SQLite file and a fresh PostgreSQL database), settings."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing.config import Settings
from tests.support.paths import SAMPLES

# Fixtures for the browser tests (one Chromium per module, a phone-sized page per test).
pytest_plugins = ["tests.support.browser_fixtures"]

# `make test` runs on two pytest-xdist workers with --dist loadfile: a worker takes a whole test
# file at a time, so a module-scoped fixture (one Airflow run, one cluster) is built once, and
# each worker asks for the next file when it is almost done with its own. A session-scoped
# fixture is still built on each worker that uses it. (Not --dist loadgroup: xdist 3.8 groups
# tests by rewriting item._nodeid, which pytest 9 no longer reads. Not --dist load: it handed
# each worker the next eighth of the collection at once, so the first worker got every slow test
# and ran them one after another while the other ran the rest and then idled for three minutes.)

# The files that start Airflow, longest first: one to two minutes each. They are queued first,
# so that none of them is left for the end while the other worker has nothing more to take.
AIRFLOW_FIRST = (
    "tests/dags/test_backfill.py",
    "tests/dags/test_invoice_cycle.py",
    "tests/dags/test_cluster.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Files in the order the workers should take them: the Airflow files, then every file with
    a slow test, then the rest; a file's tests stay together and in their order (a stable
    sort), since xdist's loadfile queues files in the order their first test comes."""
    root = config.rootpath

    def rank(item) -> tuple[int, int]:
        path = item.path.relative_to(root).as_posix()
        if path in AIRFLOW_FIRST:
            return 0, AIRFLOW_FIRST.index(path)
        return (1 if path in slow_files else 2), 0

    slow_files = {
        item.path.relative_to(root).as_posix()
        for item in items
        if item.get_closest_marker("slow") is not None
    }
    items.sort(key=rank)


# The machine's PostgreSQL (trust auth). CI requires it: a missing server fails, never skips.
PG_ADMIN_URL = os.environ.get(
    "INVOICES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def pg_admin():
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL}: {exc}", pytrace=False)
    yield engine
    engine.dispose()


@contextmanager
def _fresh_database(pg_admin, prefix: str):
    """The URL of a new, empty PostgreSQL database, dropped (its ledger engine closed) after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from storage import ledger

        engine = ledger._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with pg_admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_admin):
    """A fresh, empty PostgreSQL database, dropped after the test."""
    with _fresh_database(pg_admin, "invoices_test") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """Each ledger test runs on both databases the product supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def pg_session_url(pg_admin):
    """One fresh PostgreSQL database for the whole session, dropped at its end."""
    with _fresh_database(pg_admin, "invoices_shared") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_session_url(tmp_path_factory):
    """One SQLite ledger file for the whole session."""
    return f"sqlite:///{tmp_path_factory.mktemp('shared-ledger') / 'ledger.db'}"


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def shared_ledger(request):
    """A ledger engine on each database the product supports, shared by the whole session: for
    tests that keep to rows of their own (a new customer, number or bucket each), where making
    and migrating a database per test would cost more than the test."""
    from storage.ledger import open_ledger

    url = {"sqlite": "sqlite_session_url", "postgresql": "pg_session_url"}[request.param]
    return open_ledger(request.getfixturevalue(url))


# PDFs render in the test's own process unless a test asks for render processes (they are
# tested on their own, and through the DAG runs, which keep the product's default).
IN_PROCESS = {"INVOICES_RENDER_PROCESSES": "1"}


@pytest.fixture
def settings_for(tmp_path):
    """Settings for the embedded setup under tmp_path, with overrides."""

    def make(**overrides) -> Settings:
        env = {"INVOICES_HOME": str(tmp_path / "home"), "INVOICES_SOURCE_URL": str(SAMPLES)}
        env.update(IN_PROCESS)
        env.update({f"INVOICES_{k.upper()}": str(v) for k, v in overrides.items()})
        return Settings.from_env(env)

    return make


@pytest.fixture(scope="session")
def issued_sample(tmp_path_factory):
    """The committed sample cycles 2026-10 and 2026-11, run once for the whole session on the
    embedded setup (SQLite ledger, local archive, file outboxes): (home, their run reports).
    Tests never touch it; they take a private copy with `issued_copy`."""
    from billing import pipeline
    from billing.runtime import Runtime
    from storage import ledger

    home = tmp_path_factory.mktemp("issued-sample") / "home"
    settings = _embedded(home)
    reports = [pipeline.run_cycle(Runtime(settings), cycle) for cycle in ("2026-10", "2026-11")]
    # closing the last connection checkpoints SQLite's write-ahead log into ledger.db
    ledger._engines.pop(settings.ledger_url).dispose()
    return home, reports


@pytest.fixture
def issued_copy(issued_sample, tmp_path):
    """A private copy of the issued sample cycles, to read or to tamper with: (settings over
    the copy, the run reports of 2026-10 and 2026-11). A copy takes a fraction of a second;
    issuing both cycles again took about six."""
    home, reports = issued_sample
    copy = tmp_path / "issued-home"
    shutil.copytree(home, copy)
    return _embedded(copy), reports


def _embedded(home: Path) -> Settings:
    return Settings.from_env(
        {"INVOICES_HOME": str(home), "INVOICES_SOURCE_URL": str(SAMPLES)} | IN_PROCESS
    )


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3/SNS server on 127.0.0.1 (real HTTP), for the whole test session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch):
    """boto3's own settings pointed at the local moto server, as an operator would set them."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


@pytest.fixture
def s3_bucket(aws_env):
    """A new, empty bucket on the moto server; returns (client, bucket name)."""
    import boto3

    client = boto3.client("s3")
    name = f"invoices-{uuid.uuid4().hex[:10]}"
    client.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    return client, name
