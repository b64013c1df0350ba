"""Backfills with a real scheduler: `make airflow` starts Airflow (scheduler with LocalExecutor,
DAG processor, API server, triggerer) in a session of its own, `airflow backfill create` asks
for two past cycles, the scheduler runs them, then a third run of a cycle already done changes
nothing. `make airflow-stop` stops the whole process tree.

The scheduler's own cron scheduling is switched off (`[scheduler] use_job_schedule`), so the
only runs are the backfill's, whatever today's date is.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.airflow_env import REPO, airflow_env

BIN = Path(sys.executable).parent
BAD_ROWS = json.loads((REPO / "sample_data/cycles/2026-11/BAD_ROWS.json").read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query(db: Path, sql: str, *args) -> list[tuple]:
    """Read Airflow's or the ledger's SQLite database while the scheduler writes to it."""
    for _ in range(50):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
                return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:  # "database is locked" for a moment
            last = exc
            time.sleep(0.2)
    raise last


class Airflow:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.env = airflow_env(
            home,
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
            AIRFLOW__CORE__PARALLELISM="4",
        )
        self.db = home / "airflow" / "airflow.db"

    def make(self, target: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "--no-print-directory", target, f"AIRFLOW_PORT={self.port}"],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        # The embedded setup's one SQLite file is written by the scheduler, the DAG processor
        # and the CLI at once. A CLI transaction can still lose to the scheduler with "database
        # is locked" despite the 60 s busy timeout (SQLite refuses at once to upgrade a stale
        # read snapshot to a write), and it then rolls back whole: as an operator would, run it
        # again. PostgreSQL, the production metadata database, has no such failure.
        # `backfill create` commits the backfill before its runs, though: when the runs lose the
        # lock, Airflow deletes the backfill again only if that delete wins the lock as well.
        # One left behind keeps every new one out ("Another backfill is running"), and the
        # scheduler closes one without runs only after two minutes and a half: cancel it, as an
        # operator would in the UI, then run the command again. Every attempt's output is kept
        # for the failure message.
        outputs: list[str] = []
        for attempt in range(4):
            done = subprocess.run(
                [str(BIN / "airflow"), *args], cwd=REPO, env=self.env,
                capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            output = done.stdout + done.stderr
            outputs.append(output[-2000:])
            if done.returncode == 0:
                break
            if "database is locked" in output:
                time.sleep(2 + attempt * 3)
            elif "AlreadyRunningBackfill" in output and "database is locked" in "".join(outputs):
                self.cancel_backfills_without_runs()
            else:
                break
        assert done.returncode == 0, "\n--- next attempt ---\n".join(outputs)
        return done

    def cancel_backfills_without_runs(self) -> None:
        """Cancel, through the REST API, every open backfill that has no run: one a failed
        `backfill create` left behind."""
        left = query(
            self.db,
            "SELECT id FROM backfill WHERE completed_at IS NULL AND id NOT IN "
            "(SELECT backfill_id FROM backfill_dag_run)",
        )
        passwords = self.home / "airflow" / "simple_auth_manager_passwords.json.generated"
        token = self.api(
            "POST", "/auth/token",
            {"username": "admin", "password": json.loads(passwords.read_text())["admin"]},
        )["access_token"]  # fmt: skip
        for (backfill_id,) in left:
            self.api("PUT", f"/api/v2/backfills/{backfill_id}/cancel", token=token)

    def api(self, method: str, path: str, body: dict | None = None, token: str = "") -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def runs(self) -> list[tuple]:
        return query(
            self.db,
            "SELECT run_id, run_type, state, backfill_id FROM dag_run WHERE dag_id = ? "
            "ORDER BY logical_date, id",
            "invoice_cycle",
        )

    def wait_for_backfill(self, count: int, minutes: float = 8) -> list[tuple]:
        """The backfill's runs once all are finished and the backfill is marked complete."""
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            open_ = query(self.db, "SELECT count(*) FROM backfill WHERE completed_at IS NULL")
            runs = self.runs()
            finished = [r for r in runs if r[2] in ("success", "failed")]
            if open_ == [(0,)] and len(finished) >= count and len(finished) == len(runs):
                return runs
            time.sleep(3)
        raise AssertionError(f"backfill not done in {minutes} min: {self.runs()}")

    def task_log(self, run_id: str, task_id: str) -> str:
        """The messages a task logged (Airflow writes them as JSON lines), one after another."""
        folder = self.home / "airflow" / "logs" / "dag_id=invoice_cycle" / f"run_id={run_id}"
        events = []
        for path in sorted((folder / f"task_id={task_id}").rglob("*.log")):
            for line in path.read_text().splitlines():
                if line.startswith("{"):
                    events.append(str(json.loads(line).get("event", "")))
        return "\n".join(events)


def archive_state(archive: Path) -> dict[str, tuple[int, int]]:
    """Every invoice PDF and manifest with its size and modification time."""
    return {
        str(p.relative_to(archive)): (p.stat().st_size, p.stat().st_mtime_ns)
        for folder in ("invoices", "manifests")
        for p in (archive / folder).rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_backfill_of_two_past_cycles_by_a_real_scheduler_then_a_rerun_changes_nothing(tmp_path):
    home = tmp_path / "home"
    airflow = Airflow(home)
    started = airflow.make("airflow")
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert f"Airflow UI: http://127.0.0.1:{airflow.port}" in started.stdout
        assert "login: admin / password: " in started.stdout
        group = int((home / "airflow" / "standalone.sid").read_text())
        pools = dict(query(airflow.db, "SELECT pool, slots FROM slot_pool"))
        assert pools["invoices_smtp"] >= 1 and pools["invoices_sms"] >= 1

        airflow.cli("dags", "unpause", "invoice_cycle")
        # logical dates are the starts of the billed periods: September and October 2026,
        # i.e. the cycles issued on 1 October (2026-10) and 1 November (2026-11)
        airflow.cli(
            "backfill", "create", "--dag-id", "invoice_cycle",
            "--from-date", "2026-09-01", "--to-date", "2026-10-01", "--max-active-runs", "1",
        )  # fmt: skip
        runs = airflow.wait_for_backfill(2)
        assert [(r[1], r[2]) for r in runs] == [("backfill", "success")] * 2, runs

        ledger = home / "ledger.db"
        by_cycle = dict(query(ledger, "SELECT cycle_id, count(*) FROM invoices GROUP BY cycle_id"))
        quarantined = {
            e["customer_id"]
            for e in BAD_ROWS
            if e["quarantined"] and e["reason"] != "unknown_customer"
        }
        assert by_cycle == {"2026-10": 300, "2026-11": 314 - len(quarantined)}
        # one gap-free series; the cycles ran one after the other, so their numbers do not mix
        seqs = query(ledger, "SELECT seq, cycle_id FROM invoices ORDER BY seq")
        assert [s for s, _ in seqs] == list(range(1, len(seqs) + 1))
        assert [c for _, c in seqs] == sorted(c for _, c in seqs)
        documents = query(ledger, "SELECT count(*) FROM invoice_documents")[0][0]
        assert documents == len(seqs)
        archive = home / "archive"
        pdfs = archive_state(archive)
        assert sum(k.endswith(".pdf") for k in pdfs) == len(seqs)
        assert {"manifests/2026-10.json", "manifests/2026-11.json"} <= set(pdfs)

        # a backfill sends nothing unless asked: no e-mail, no SMS, no print batch
        assert not (home / "outbox").exists()
        assert not (archive / "print").exists()
        unsent = dict(query(ledger, "SELECT status, count(*) FROM notices GROUP BY status"))
        assert set(unsent) == {"pending"}

        # each run billed the period of its interval, and logged its report as a table
        for (run_id, *_), cycle, period in zip(
            runs,
            ("2026-10", "2026-11"),
            ({"start": "2026-09-01", "end": "2026-09-30"},
             {"start": "2026-10-01", "end": "2026-10-31"}),
            strict=True,
        ):  # fmt: skip
            [report] = [
                json.loads(p.read_text()) for p in (archive / "reports" / cycle).glob("*.json")
            ]
            assert report["run_id"] == run_id and report["period"] == period
            assert report["invoices_issued"] == by_cycle[cycle]
            assert f"run bills cycle {cycle}" in airflow.task_log(run_id, "stage")
            logged = airflow.task_log(run_id, "report")
            assert re.search(rf"^\s*invoices issued\s+{by_cycle[cycle]}$", logged, re.M), logged
            assert re.search(
                rf"^\s*billed period\s+{period['start']} to {period['end']}$", logged, re.M
            )

        first = report  # of cycle 2026-11

        # the third run: cycle 2026-11 again, although it is done
        airflow.cli(
            "backfill", "create", "--dag-id", "invoice_cycle",
            "--from-date", "2026-10-01", "--to-date", "2026-10-01",
            "--reprocess-behavior", "completed",
        )  # fmt: skip
        rerun = airflow.wait_for_backfill(2)
        assert [r[2] for r in rerun] == ["success", "success"], rerun
        assert rerun[1][3] != runs[1][3]  # run by the new backfill
        assert query(ledger, "SELECT seq, cycle_id FROM invoices ORDER BY seq") == seqs
        assert query(ledger, "SELECT count(*) FROM invoice_documents")[0][0] == documents
        assert archive_state(archive) == pdfs  # no PDF written, none touched
        assert not (home / "outbox").exists()
        assert dict(query(ledger, "SELECT status, count(*) FROM notices GROUP BY status")) == unsent
        # the backfill cleared the DAG run and ran it again under its run id: one report,
        # written again, with the same counts (those of the run id) and nothing new
        [again] = [
            json.loads(p.read_text()) for p in (archive / "reports" / "2026-11").glob("*.json")
        ]
        assert again["run_id"] == runs[1][0] and again["finished_at"] > first["finished_at"]
        for key in ("invoices_issued", "invoices_existing", "pdfs_archived", "notices", "totals"):
            assert again[key] == first[key]
    finally:
        stopped = airflow.make("airflow-stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Airflow stopped" in stopped.stdout
    # the whole process tree is gone, task processes (in process groups of their own) included
    assert subprocess.run(["pgrep", "-s", str(group)], capture_output=True).returncode == 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", airflow.port), timeout=2)
