"""`make cluster`: Airflow on the CeleryExecutor with two workers on this machine, and a cycle
run on it. `make cluster-stop` stops everything it started.

    python -m billing.cluster start [--cycle 2026-11]   # start, run the cycle, print who ran what
    python -m billing.cluster stop                      # stop every process it started

What runs, each in a session of its own (`setsid`) so that stopping a session ends its whole
process tree, task processes included:

    s3              moto's S3 server on 127.0.0.1: source, staging and the Object Lock archive
    api-server      the UI, the REST API and the execution API the workers talk to
    scheduler       sends tasks to Celery (broker: Redis, results: Redis)
    dag-processor   parses the DAG files into Airflow's database
    worker-1, -2    `airflow celery worker`, each in its own working directory with its own
                    AIRFLOW_HOME and INVOICES_HOME: no local file is shared between workers

Airflow's database and the ledger are PostgreSQL databases made afresh at every start (the S3
server keeps its objects in memory, so the ledger must start empty with it). Workers never
touch Airflow's database: they reach the API server's execution API. The processes and their
logs are under `$INVOICES_HOME/cluster/`; `sessions.json` there names the sessions to stop.

This is the edge, beside the CLI: it reads the environment, starts processes and speaks to
Airflow over HTTP; it does not import Airflow.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

CHECKOUT = Path(__file__).resolve().parents[1]
SAMPLE_CYCLES = CHECKOUT / "sample_data" / "cycles"
BIN = Path(sys.executable).parent

DAG_ID = "invoice_cycle"
# The mapped tasks, one per chunk: what `workers:` counts.
CHUNK_TASKS = ("render_archive", "validate_efactura", "notify_email", "notify_sms")
SESSIONS = "sessions.json"
REGION = "eu-central-1"
# The variable that names a worker to `worker_hostname`, Airflow's [core] hostname_callable.
WORKER_VARIABLE = "INVOICES_CLUSTER_WORKER"


class ClusterError(Exception):
    """The cluster could not start, or its run failed: the message says why and what to do."""


class ClusterRefused(ClusterError):
    """Nothing was started: a cluster already runs there, or a port it needs is taken."""


def worker_hostname() -> str:
    """The name a task instance records as its hostname (Airflow's `[core] hostname_callable`
    on the workers): the worker's own name, since both demo workers share one machine."""
    return os.environ.get(WORKER_VARIABLE) or socket.getfqdn()


@dataclass(frozen=True)
class ClusterSettings:
    """Where the cluster lives and what it is made of. `name` prefixes its databases,
    buckets and Celery queue, so two clusters (the demo and a test) never meet."""

    root: Path
    api_port: int = 8280
    s3_port: int = 5055
    pg_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/1"
    name: str = "invoices_cluster"
    workers: tuple[str, ...] = ("worker-1", "worker-2")
    worker_concurrency: int = 2
    chunk_size: int = 40
    # Both workers get notify chunks only if a pool lets two run at once (one per worker).
    smtp_slots: int = 4
    sms_slots: int = 2
    # Extra environment for every process (the caller's INVOICES_* settings, PATH, ...).
    base_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> ClusterSettings:
        env = os.environ if env is None else env
        home = Path(env.get("INVOICES_HOME") or CHECKOUT / ".data").absolute()
        values = dict(
            root=home / "cluster",
            pg_url=env.get("CLUSTER_PG_URL") or cls.pg_url,
            redis_url=env.get("CLUSTER_REDIS_URL") or cls.redis_url,
            chunk_size=int(env.get("INVOICES_CHUNK_SIZE") or cls.chunk_size),
            smtp_slots=int(env.get("CLUSTER_SMTP_POOL_SLOTS") or cls.smtp_slots),
            sms_slots=int(env.get("CLUSTER_SMS_POOL_SLOTS") or cls.sms_slots),
            base_env={k: v for k, v in env.items() if not k.startswith(("AIRFLOW", "CLUSTER_"))},
        )
        values.update(overrides)
        return cls(**values)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def work_bucket(self) -> str:  # the export (source) and the staged chunks
        return f"{self.name}-work".replace("_", "-")

    @property
    def archive_bucket(self) -> str:  # write-once, Object Lock
        return f"{self.name}-archive".replace("_", "-")

    def database_url(self, purpose: str) -> str:
        base, _, _ = self.pg_url.rpartition("/")
        return f"{base}/{self.name}_{purpose}"

    def product_env(self, home: Path) -> dict[str, str]:
        """Contract 3 for every process: S3 for source, staging and archive, the ledger on
        PostgreSQL, and `home` for what stays local (the file outboxes)."""
        return {
            "INVOICES_HOME": str(home),
            "INVOICES_LEDGER_URL": self.database_url("ledger"),
            "INVOICES_SOURCE_URL": f"s3://{self.work_bucket}/exports",
            "INVOICES_STAGING_URL": f"s3://{self.work_bucket}/staging",
            "INVOICES_ARCHIVE_URL": f"s3://{self.archive_bucket}/billing",
            "INVOICES_CHUNK_SIZE": str(self.chunk_size),
            # each worker runs `worker_concurrency` chunk tasks at once: they fill the cores
            # between them, so a task renders in its own process
            "INVOICES_RENDER_PROCESSES": "1",
            "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "cluster",
            "AWS_SECRET_ACCESS_KEY": "cluster",
        }


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    state: str
    # (task_id, map_index) -> the worker that ran it, for every mapped chunk task
    chunk_tasks: dict[tuple[str, int], str]
    report: dict

    def by_worker(self) -> dict[str, Counter]:
        table: dict[str, Counter] = {}
        for (task_id, _), worker in sorted(self.chunk_tasks.items(), key=lambda item: item[1]):
            table.setdefault(worker, Counter())[task_id] += 1
        return table


class Cluster:
    """Start, drive and stop the processes of one cluster (see the module docstring)."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.root = settings.root
        self._token = ""

    # -- processes ---------------------------------------------------------------------------

    def sessions(self) -> dict[str, int]:
        try:
            return json.loads((self.root / SESSIONS).read_text())
        except FileNotFoundError:
            return {}

    def running(self) -> dict[str, list[int]]:
        """The recorded sessions that still have processes: name -> their pids."""
        alive = {}
        for name, sid in self.sessions().items():
            pids = session_processes(sid)
            if pids:
                alive[name] = pids
        return alive

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        # recorded at once, so a stop after a partial start still finds it
        recorded = self.sessions() | {name: process.pid}
        (self.root / SESSIONS).write_text(json.dumps(recorded, indent=1))

    def stop(self, grace: float = 30) -> list[str]:
        """End every session the cluster started, gently then for good; the names stopped."""
        recorded = self.sessions()
        for sid in recorded.values():
            signal_session(sid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(map(session_processes, recorded.values())):
            time.sleep(0.5)
        for sid in recorded.values():
            signal_session(sid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(map(session_processes, recorded.values())):
            time.sleep(0.2)
        (self.root / SESSIONS).unlink(missing_ok=True)
        return list(recorded)

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every process and wait until the cluster can run a cycle. On a failure the
        processes already started keep running: `stop` ends them (as `make cluster` does)."""
        s = self.settings
        if alive := self.running():
            raise ClusterRefused(
                f"a cluster is already running under {self.root} ({', '.join(alive)}): "
                "stop it first with make cluster-stop"
            )
        (self.root / SESSIONS).unlink(missing_ok=True)
        for port, what in ((s.api_port, "the API server"), (s.s3_port, "the S3 server")):
            if not port_free(port):
                raise ClusterRefused(
                    f"port {port} (for {what}) is taken: stop what runs there, or choose "
                    "another with CLUSTER_PORT / CLUSTER_S3_PORT"
                )
        broker = urlsplit(s.redis_url)
        if not port_open(broker.port or 6379, broker.hostname or "127.0.0.1"):
            raise ClusterRefused(f"Redis, the Celery broker, does not answer at {s.redis_url}")
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_secrets()
        self._reset_databases()
        self._spawn("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s.s3_port)],
                    s.base_env, self.root)  # fmt: skip
        airflow = str(BIN / "airflow")
        # Workers need no database: they start while Airflow's is migrated.
        for worker in s.workers:
            argv = [
                airflow, "celery", "worker", "--celery-hostname", worker,
                "--queues", s.name, "--concurrency", str(s.worker_concurrency),
                "--skip-serve-logs", "--without-mingle", "--without-gossip",
            ]  # fmt: skip
            self._spawn(worker, argv, self.worker_env(worker), self.root / worker)
        self._airflow_cli("db", "migrate")
        self._create_buckets()

        control = self.control_env()
        self._spawn("api-server", [airflow, "api-server"], control, self.root)
        self._spawn("scheduler", [airflow, "scheduler", "--skip-serve-logs"], control, self.root)
        self._spawn("dag-processor", [airflow, "dag-processor"], control, self.root)

        self._wait("the API server to answer", self._api_healthy, 240, "api-server")
        for worker in s.workers:
            self._wait(f"{worker} to be ready", lambda w=worker: self._worker_ready(w), 240, worker)
        self._wait(f"the DAG {DAG_ID} to be parsed", self._dag_parsed, 240, "dag-processor")
        self._set_pool("invoices_smtp", s.smtp_slots, "e-mail notify tasks at once, all cycles")
        self._set_pool("invoices_sms", s.sms_slots, "SMS notify tasks at once, all cycles")

    def _write_secrets(self) -> None:
        """Secrets every component shares (the JWT of the execution API above all), made anew
        at each start and kept only in the cluster's folder."""
        shared = {
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret_key": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "password": secrets.token_urlsafe(12),
        }
        path = self.root / "secrets.json"
        path.write_text(json.dumps(shared))
        path.chmod(0o600)
        passwords = self.root / "airflow" / "passwords.json"
        passwords.parent.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({"admin": shared["password"]}))
        passwords.chmod(0o600)

    def _secrets(self) -> dict[str, str]:
        return json.loads((self.root / "secrets.json").read_text())

    def airflow_env(self, home: Path) -> dict[str, str]:
        """Airflow's settings for every component: CeleryExecutor, Redis, the shared secrets."""
        s, shared = self.settings, self._secrets()
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(CHECKOUT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Bucharest",
            "AIRFLOW__CORE__FERNET_KEY": shared["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.api_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": shared["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": shared["api_secret_key"],
            "AIRFLOW__CELERY__BROKER_URL": s.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": s.redis_url,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": s.name,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__CELERY_LOGGING_LEVEL": "INFO",
            # manual runs only: unpausing must not put the schedule live on a demo
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "PYTHONPATH": os.pathsep.join([str(CHECKOUT), str(CHECKOUT / "dags")]),
        }

    def control_env(self) -> dict[str, str]:
        """The API server, scheduler and DAG processor: Airflow's database is theirs."""
        s = self.settings
        database = s.database_url("airflow")
        return {
            **s.base_env,
            **s.product_env(self.root / "home"),
            **self.airflow_env(self.root / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": database,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(s.api_port),
            "AIRFLOW__API__BASE_URL": s.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                self.root / "airflow" / "passwords.json"
            ),
        }

    def worker_env(self, worker: str) -> dict[str, str]:
        """A worker: its own folder for everything local, no database of Airflow's."""
        folder = self.root / worker
        return {
            **self.settings.base_env,
            **self.settings.product_env(folder / "home"),
            **self.airflow_env(folder / "airflow"),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "billing.cluster.worker_hostname",
            WORKER_VARIABLE: worker,
        }

    def _reset_databases(self) -> None:
        import sqlalchemy as sa

        admin = sa.create_engine(self.settings.pg_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for purpose in ("airflow", "ledger"):
                    name = f"{self.settings.name}_{purpose}"
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            raise ClusterError(f"PostgreSQL is needed at {self.settings.pg_url}: {exc}") from exc
        finally:
            admin.dispose()

    def drop_databases(self) -> None:
        import sqlalchemy as sa

        admin = sa.create_engine(self.settings.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for purpose in ("airflow", "ledger"):
                name = f"{self.settings.name}_{purpose}"
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    def _airflow_cli(self, *args: str) -> None:
        log = self.root / "airflow-cli.log"
        with open(log, "ab") as out:
            done = subprocess.run(
                [str(BIN / "airflow"), *args], cwd=self.root, env=self.control_env(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=600,
            )  # fmt: skip
        if done.returncode != 0:
            raise ClusterError(f"airflow {' '.join(args)} failed:\n{tail(log)}")

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.settings.s3_url, region_name=REGION,
            aws_access_key_id="cluster", aws_secret_access_key="cluster",
        )  # fmt: skip

    def _create_buckets(self) -> None:
        self._wait("the S3 server to answer", lambda: port_open(self.settings.s3_port), 60, "s3")
        client, where = self.s3_client(), {"LocationConstraint": REGION}
        client.create_bucket(Bucket=self.settings.work_bucket, CreateBucketConfiguration=where)
        client.create_bucket(
            Bucket=self.settings.archive_bucket,
            CreateBucketConfiguration=where,
            ObjectLockEnabledForBucket=True,
        )

    def upload_cycle(self, folder: Path) -> str:
        """Put a cycle export (a local folder) where the cluster's source is; its cycle id."""
        client = self.s3_client()
        for path in sorted(folder.iterdir()):
            if path.is_file():
                key = f"exports/{folder.name}/{path.name}"
                client.upload_file(str(path), self.settings.work_bucket, key)
        return folder.name

    def _wait(self, what: str, ready, seconds: float, log_name: str) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            sid = self.sessions().get(log_name)
            if sid is not None and not session_processes(sid):
                raise ClusterError(
                    f"{log_name} stopped while starting:\n{tail(self._log(log_name))}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"waited {seconds:.0f} s for {what}, in vain:\n{tail(self._log(log_name))}"
                )
            time.sleep(1)

    def _log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _worker_ready(self, worker: str) -> bool:
        log = self._log(worker)
        return log.exists() and f"@{worker} ready." in log.read_text(errors="replace")

    # -- the REST API --------------------------------------------------------------------------

    def _api_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.settings.api_url}/api/v2/monitor/health", timeout=3
            ):
                return True
        except (OSError, urllib.error.URLError):
            return False

    def api(self, method: str, path: str, body: dict | None = None, ok=(200, 201)) -> dict:
        if not self._token:
            self._token = self._request(
                "POST",
                "/auth/token",
                {"username": "admin", "password": self._secrets()["password"]},
            )[1]["access_token"]
        status, answer = self._request(method, path, body, self._token)
        if status not in ok:
            raise ClusterError(f"{method} {path} answered {status}: {answer}")
        return answer

    def _request(self, method: str, path: str, body=None, token: str = "") -> tuple[int, dict]:
        request = urllib.request.Request(
            self.settings.api_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {"detail": exc.read().decode(errors="replace")[:500]}

    def _dag_parsed(self) -> bool:
        return bool(self.api("GET", f"/api/v2/dags/{DAG_ID}", ok=(200, 404)).get("dag_id"))

    def _set_pool(self, name: str, slots: int, description: str) -> None:
        body = {"name": name, "slots": slots, "description": description}
        if self.api("POST", "/api/v2/pools", body, ok=(201, 409)).get("name") != name:
            self.api("PATCH", f"/api/v2/pools/{name}", body)

    # -- a run ---------------------------------------------------------------------------------

    def run_cycle(self, cycle_id: str, timeout: float = 900) -> RunOutcome:
        """Trigger `invoice_cycle` for `cycle_id` (already uploaded) and wait for its end."""
        self.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        run = self.api(
            "POST",
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            {"logical_date": None, "conf": {"cycle_id": cycle_id}},
        )
        run_id = run["dag_run_id"]
        deadline, state = time.monotonic() + timeout, run["state"]
        while state not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"run {run_id} of cycle {cycle_id} did not end in {timeout:.0f} s "
                    f"(still {state}): see {self.settings.api_url} and the logs in {self.root}"
                )
            time.sleep(2)
            state = self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        instances = self.api(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=1000"
        )["task_instances"]
        if state != "success":
            failed = sorted(
                f"{ti['task_id']}[{ti['map_index']}]" if ti["map_index"] >= 0 else ti["task_id"]
                for ti in instances
                if ti["state"] in ("failed", "upstream_failed")
            )
            raise ClusterError(
                f"run {run_id} of cycle {cycle_id} failed (tasks: {', '.join(failed)}): task logs "
                f"under {self.root}/<worker>/airflow/logs, or in the UI at {self.settings.api_url}"
            )
        chunk_tasks = {
            (ti["task_id"], ti["map_index"]): ti["hostname"] or "?"
            for ti in instances
            if ti["task_id"] in CHUNK_TASKS and ti["map_index"] >= 0
        }
        return RunOutcome(run_id, state, chunk_tasks, self.load_report(cycle_id, run_id))

    def runtime(self):
        """The product's runtime over the cluster's ledger and S3, from this process."""
        from billing.config import Settings
        from billing.runtime import Runtime

        settings = Settings.from_env(self.settings.product_env(self.root / "home"))
        return Runtime(replace(settings, s3_client=self.s3_client()))

    def load_report(self, cycle_id: str, run_id: str) -> dict:
        from billing import pipeline

        return pipeline.load_report(self.runtime(), cycle_id, run_id)


# -- sessions of processes ---------------------------------------------------------------------


def session_processes(sid: int) -> list[int]:
    """The live (not zombie) processes of session `sid`, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat.rpartition(")")[2].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(int(entry))
    return found


def signal_session(sid: int, signum: int) -> None:
    for pid in session_processes(sid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def port_free(port: int) -> bool:
    """Nothing listens on the port (connections of a server just stopped may linger in
    TIME_WAIT: servers bind with SO_REUSEADDR, so this does too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no {path})"


# -- the command line --------------------------------------------------------------------------


def format_workers(outcome: RunOutcome) -> str:
    """The table of chunk tasks per worker, then the `workers:` line (contract 5)."""
    table = outcome.by_worker()
    header = ("worker", *CHUNK_TASKS, "total")
    rows = [(w, *(str(c[t]) for t in CHUNK_TASKS), str(c.total())) for w, c in table.items()]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["chunk tasks by worker", "====================="]
    for row in (header, tuple("-" * w for w in widths), *rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    lines.append("workers: " + ", ".join(f"{w}={c.total()}" for w, c in table.items()))
    return "\n".join(lines)


def _start(settings: ClusterSettings, cycle: Path, timeout: float) -> int:
    from billing import pipeline

    cluster = Cluster(settings)
    print(f"starting the cluster (logs: {settings.root})", flush=True)
    try:
        cluster.start()
    except ClusterRefused as exc:
        print(f"the cluster was not started: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # Ctrl-C too: stop what did start, so its ports are free again
        cluster.stop()
        if not isinstance(exc, ClusterError):
            raise
        print(f"the cluster did not start: {exc}", file=sys.stderr)
        return 1
    password = cluster._secrets()["password"]
    print(f"Airflow UI: {settings.api_url}  login: admin / password: {password}")
    print(f"workers: {', '.join(settings.workers)} (CeleryExecutor, queue {settings.name})")
    cycle_id = cluster.upload_cycle(cycle)
    print(f"running cycle {cycle_id} ({settings.chunk_size} customers a chunk)", flush=True)
    try:
        outcome = cluster.run_cycle(cycle_id, timeout)
    except ClusterError as exc:
        print(f"{exc}\nthe cluster keeps running for a look: make cluster-stop", file=sys.stderr)
        return 1
    print(pipeline.format_report(outcome.report))
    print(f"stop with: make cluster-stop\n{format_workers(outcome)}")
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing.cluster", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the cluster and run a cycle on it")
    start.add_argument("--cycle", default=max(p.name for p in SAMPLE_CYCLES.iterdir()),
                       help="a committed sample cycle (default: the newest)")  # fmt: skip
    port, s3_port = os.environ.get("CLUSTER_PORT"), os.environ.get("CLUSTER_S3_PORT")
    start.add_argument("--api-port", type=int, default=int(port or ClusterSettings.api_port))
    start.add_argument("--s3-port", type=int, default=int(s3_port or ClusterSettings.s3_port))
    start.add_argument("--timeout", type=float, default=900, help="seconds the run may take")
    commands.add_parser("stop", help="stop every process the cluster started")
    args = parser.parse_args(None if argv is None else list(argv))

    if args.command == "stop":
        cluster = Cluster(ClusterSettings.from_env())
        if not cluster.sessions():
            print(f"the cluster is not running (no {cluster.root / SESSIONS})")
            return 0
        stopped = cluster.stop()
        print(f"cluster stopped: {', '.join(stopped)}")
        return 0
    folder = SAMPLE_CYCLES / args.cycle
    if not (folder / "cycle.json").is_file():
        print(f"no sample cycle {args.cycle} under {SAMPLE_CYCLES}", file=sys.stderr)
        return 2
    settings = ClusterSettings.from_env(api_port=args.api_port, s3_port=args.s3_port)
    return _start(settings, folder, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
