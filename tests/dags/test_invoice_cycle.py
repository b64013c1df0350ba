"""The invoice_cycle DAG: it parses fast and clean, and `make run` runs the sample cycle
end to end through `airflow dags test`; running it again issues nothing new."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.airflow_env import REPO, airflow_env

BIN = Path(sys.executable).parent


PARSE = """
import json
from airflow.sdk import BaseHook
from airflow.sdk.definitions.connection import Connection

looked_up = []
def refuse(*args, **kwargs):
    looked_up.append(args[-1] if args else kwargs)
    raise RuntimeError("connection lookup while parsing")
BaseHook.get_connection = classmethod(refuse)
Connection.get = classmethod(refuse)

from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={folder!r})
print(json.dumps({{
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "seconds": {{s.file: s.duration.total_seconds() for s in bag.dagbag_stats}},
    "lookups": [str(x) for x in looked_up],
    "dags": {{
        dag_id: {{
            "tags": sorted(dag.tags), "retries": [t.retries for t in dag.tasks],
            "params": list(dag.params.keys()), "tasks": sorted(t.task_id for t in dag.tasks),
        }}
        for dag_id, dag in bag.dags.items()
    }},
}}))
"""


def test_every_dag_parses_fast_without_connections_with_retries_and_tags(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", PARSE.format(folder=str(REPO / "dags"))],
        env=airflow_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert parsed["lookups"] == []
    assert len(parsed["seconds"]) == 4 and max(parsed["seconds"].values()) < 2
    assert set(parsed["dags"]) == {
        "invoice_cycle", "invoice_resend_failed", "invoice_audit_verify", "invoice_efactura"
    }  # fmt: skip
    for dag in parsed["dags"].values():
        assert {"billing", "invoices"} <= set(dag["tags"])
        assert all(r >= 1 for r in dag["retries"])
    cycle = parsed["dags"]["invoice_cycle"]
    assert all(r >= 2 for r in cycle["retries"])
    assert cycle["params"] == ["cycle_id", "send_notices"]
    assert {
        "stage",
        "issue",
        "render_archive",
        "validate_efactura",
        "notify_email",
        "notify_sms",
        "print_batch",
        "report",
    } <= set(cycle["tasks"])


def make_run(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    # chunks of 100 customers: the sample's 301 valid customers make 4 mapped render tasks
    env = {**airflow_env(home), "INVOICES_CHUNK_SIZE": "100", **extra_env}
    return subprocess.run(
        ["make", "--no-print-directory", "run", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def reports(home: Path) -> list[dict]:
    folder = home / "archive" / "reports" / "2026-11"
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted(found, key=lambda r: r["finished_at"])


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """An INVOICES_HOME after one `make run` of the newest sample cycle, and what it printed.
    Tests take a copy (`_copy_of`): a run costs half a minute, and three tests start from one."""
    home = tmp_path_factory.mktemp("sample-run") / "home"
    done = make_run(home)
    assert done.returncode == 0, done.stdout + done.stderr
    return home, done


def _copy_of(sample_run, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(sample_run[0], home, symlinks=True)
    # Airflow wrote its first home's absolute paths into airflow.cfg (its database, its logs):
    # without this, every copy's runs went to the sample run's own Airflow database.
    config = home / "airflow" / "airflow.cfg"
    config.write_text(config.read_text().replace(str(sample_run[0]), str(home)))
    return home


@pytest.mark.slow
def test_make_run_issues_the_sample_cycle_once(sample_run, tmp_path):
    home = _copy_of(sample_run, tmp_path)
    first = sample_run[1]
    assert "invoices issued" in first.stdout  # the run report is printed
    [report] = reports(home)
    bad = json.loads((REPO / "sample_data/cycles/2026-11/BAD_ROWS.json").read_text())
    quarantined = {
        e["customer_id"] for e in bad if e["quarantined"] and e["reason"] != "unknown_customer"
    }
    assert report["customers"] == 314
    assert report["quarantined_customers"] == len(quarantined)
    assert report["invoices_issued"] == 314 - len(quarantined)
    assert report["invoices_existing"] == 0
    assert report["pdfs_archived"] == report["invoices_issued"]
    assert report["chunks"] == 4
    assert set(report) >= {
        "cycle_id", "run_id", "started_at", "finished_at", "customers", "quarantined_customers",
        "quarantined_rows", "invoices_issued", "invoices_existing", "pdfs_archived", "notices",
        "paper_queued", "fallbacks", "totals",
    }  # fmt: skip

    engine = sa.create_engine(f"sqlite:///{home / 'ledger.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT seq, total, net_total, vat_total FROM invoices ORDER BY seq")
        ).all()
        outbox = dict(
            conn.execute(sa.text("SELECT channel, count(*) FROM notices GROUP BY channel")).all()
        )
    # every notice of the outbox was sent once, through the embedded file transports
    assert report["notices"]["email"] == {"sent": outbox["email"], "failed": 0, "pending": 0}
    assert report["notices"]["sms"] == {"sent": outbox["sms"], "failed": 0, "pending": 0}
    emails = sorted((home / "outbox" / "email").glob("*.eml"))
    sms_lines = (home / "outbox" / "sms.jsonl").read_text().splitlines()
    assert (len(emails), len(sms_lines)) == (outbox["email"], outbox["sms"])
    batches = sorted((home / "archive" / "print" / "2026-11").iterdir())
    assert [p.suffix for p in batches] == [".csv", ".pdf"]
    assert report["paper_queued"] == outbox["paper"] and report["fallbacks"] == 2
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == report["invoices_issued"]
    assert f"{sum(r.total for r in rows) / 100:.2f}" == report["totals"]["gross"]
    assert f"{sum(r.net_total for r in rows) / 100:.2f}" == report["totals"]["net"]

    second = make_run(home)
    assert second.returncode == 0, second.stdout + second.stderr
    again = reports(home)[-1]
    assert (again["invoices_issued"], again["invoices_existing"]) == (0, report["invoices_issued"])
    assert (again["pdfs_archived"], again["pdfs_existing"]) == (0, report["pdfs_archived"])
    assert again["manifest"] == report["manifest"]
    assert again["notices"] == report["notices"]
    assert sorted((home / "outbox" / "email").glob("*.eml")) == emails
    assert (home / "outbox" / "sms.jsonl").read_text().splitlines() == sms_lines
    assert sorted((home / "archive" / "print" / "2026-11").iterdir()) == batches
    assert again["totals"] == report["totals"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM invoices")).scalar() == len(rows)


def dags_test(
    home: Path, dag_id: str, conf: dict, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "airflow"), "dags", "test", dag_id, "--conf", json.dumps(conf)],
        cwd=REPO, env={**airflow_env(home), **(env or {})}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_ops_and_audit_dags_wrap_the_cli_functions(sample_run, tmp_path):
    home = _copy_of(sample_run, tmp_path)
    verified = dags_test(home, "invoice_audit_verify", {"cycle_id": "2026-11"})
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    resent = dags_test(home, "invoice_resend_failed", {"cycle_id": "2026-11"})
    assert resent.returncode == 0, resent.stdout[-2000:] + resent.stderr[-2000:]

    pdf = next((home / "archive" / "invoices").rglob("*.pdf"))
    pdf.chmod(0o644)
    pdf.write_bytes(pdf.read_bytes() + b"%tampered")
    failed = dags_test(home, "invoice_audit_verify", {"cycle_id": "2026-11"})
    assert failed.returncode != 0
    assert f"{pdf.relative_to(home / 'archive')}" in failed.stdout + failed.stderr


@pytest.mark.slow
def test_the_efactura_dag_uploads_the_cycle_once_and_fails_loudly_on_deadlines(
    sample_run, tmp_path
):
    from tests.support.anaf_simulator import Running

    home = _copy_of(sample_run, tmp_path)
    # without ANAF: validated only, and the sample (issued 1 November) is past its deadline
    alone = dags_test(home, "invoice_efactura", {})
    assert alone.returncode != 0
    assert "at or past their e-Factura deadline" in alone.stdout + alone.stderr
    with Running() as anaf:
        env = {
            "INVOICES_EFACTURA_URL": anaf.api_url, "INVOICES_EFACTURA_TOKEN_URL": anaf.token_url,
            "INVOICES_EFACTURA_REFRESH_TOKEN": anaf.sim.issue_refresh_token(),
            "INVOICES_EFACTURA_TIMEOUT_SECONDS": "2",
        }  # fmt: skip
        anaf.sim.faults.timeout_after_accept, anaf.sim.faults.hold_seconds = 1, 5
        runs = [dags_test(home, "invoice_efactura", {}, env) for _ in range(2)]
        uploads = [u.number for u in anaf.sim.uploads.values()]
    # the first run's lost reply is found in the message list; the second run sends nothing
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with sa.create_engine(f"sqlite:///{home / 'ledger.db'}").connect() as conn:
        states = dict(conn.execute(sa.text("SELECT number, state FROM efactura_documents")).all())
    assert set(states.values()) == {"accepted"} and sorted(uploads) == sorted(states)


@pytest.mark.slow
def test_make_run_fails_on_a_missing_cycle_and_says_why(tmp_path):
    done = make_run(tmp_path / "home", "CYCLE=1999-01")
    assert done.returncode != 0
    assert "1999-01/cycle.json: missing" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_cycle_whose_every_customer_is_quarantined_still_ends_with_its_report(tmp_path):
    # No valid customer means no chunk: every mapped task is skipped. The print batch and the
    # report still run (they used to be skipped too: no report, the run row left "running").
    source = tmp_path / "source" / "2026-11"
    shutil.copytree(REPO / "sample_data" / "cycles" / "2026-11", source)
    lines = (source / "customers.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (source / "customers.csv").write_text(
        lines[0] + "".join("!" + line for line in lines[1:]), encoding="utf-8"
    )
    cycle = json.loads((source / "cycle.json").read_text())
    cycle.pop("control", None)
    (source / "cycle.json").write_text(json.dumps(cycle))
    home = tmp_path / "home"
    done = make_run(home, INVOICES_SOURCE_URL=str(tmp_path / "source"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "! no invoice: all 314 customers were quarantined" in done.stdout
    [report] = reports(home)
    assert (report["invoices_issued"], report["chunks"]) == (0, 0)
    assert (home / "archive" / report["quarantine_report"]).exists()
    engine = sa.create_engine(f"sqlite:///{home / 'ledger.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM runs")).scalars().all() == ["finished"]


@pytest.mark.slow
def test_the_run_of_the_whole_cycle_agrees_with_airflow_the_ledger_and_the_archive(
    sample_run, tmp_path
):
    # The module's sample run: `make run` is `airflow dags test`, which runs `dag.test()`, so a
    # second whole run through `dag.test()` in a Python process of its own (20 s) ran the same
    # tasks on the same export; Airflow's own record of the run must agree as well.
    home = _copy_of(sample_run, tmp_path)
    airflow_db = sa.create_engine(f"sqlite:///{home / 'airflow' / 'airflow.db'}")
    with airflow_db.connect() as conn:
        [run] = conn.execute(
            sa.text("SELECT run_id, state FROM dag_run WHERE dag_id = 'invoice_cycle'")
        ).all()
    assert run.state == "success", run

    archive = home / "archive"
    report = json.loads((archive / "reports" / "2026-11" / f"{run.run_id}.json").read_text())
    assert report["run_id"] == run.run_id and report["chunks"] == 4
    assert report["period"] == {"start": "2026-10-01", "end": "2026-10-31"}
    engine = sa.create_engine(f"sqlite:///{home / 'ledger.db'}")
    with engine.connect() as conn:
        invoices = conn.execute(
            sa.text("SELECT number, customer_id, net_total, vat_total, total FROM invoices")
        ).all()
        documents = {
            r.number: r
            for r in conn.execute(
                sa.text("SELECT number, key, size, sha256 FROM invoice_documents")
            )
        }
        outbox = conn.execute(
            sa.text("SELECT channel, status, count(*) FROM notices GROUP BY channel, status")
        ).all()

    # the report's counts are the ledger's
    assert (
        report["invoices_issued"]
        == len(invoices)
        == report["customers"] - report["quarantined_customers"]
    )
    assert report["pdfs_archived"] == len(documents) == len(invoices)
    for channel in ("email", "sms"):
        sent = sum(n for c, s, n in outbox if c == channel and s == "sent")
        assert report["notices"][channel] == {"sent": sent, "failed": 0, "pending": 0}
        assert sum(n for c, _, n in outbox if c == channel) == sent
    assert report["paper_queued"] == sum(n for c, _, n in outbox if c == "paper")
    cents = {"net": 2, "vat": 3, "gross": 4}
    for key, column in cents.items():
        assert report["totals"][key] == f"{sum(r[column] for r in invoices) / 100:.2f}"

    # ... and the archive's: every PDF of the manifest is there with the ledger's size and hash
    manifest = json.loads((archive / report["manifest"]["key"]).read_bytes())
    assert (
        hashlib.sha256((archive / report["manifest"]["key"]).read_bytes()).hexdigest()
        == (report["manifest"]["sha256"])
    )
    assert len(manifest["invoices"]) == len(invoices)
    for entry in manifest["invoices"]:
        data = (archive / entry["key"]).read_bytes()
        document = documents[entry["number"]]
        assert (entry["key"], entry["size"], entry["sha256"]) == (
            document.key, len(data), hashlib.sha256(data).hexdigest()
        )  # fmt: skip
        assert document.sha256 == entry["sha256"] and document.size == entry["size"]
    # the sent notices are in the outboxes, the paper invoices in the print batch
    assert (
        len(list((home / "outbox" / "email").glob("*.eml"))) == report["notices"]["email"]["sent"]
    )
    sms = (home / "outbox" / "sms.jsonl").read_text().splitlines()
    assert len(sms) == report["notices"]["sms"]["sent"]
    [batch] = (archive / "print" / "2026-11").glob("*.csv")
    with batch.open(encoding="utf-8", newline="") as rows:
        assert len(list(csv.DictReader(rows))) == report["paper_queued"]
    # the quarantine report it names lists the rows it counts
    with (archive / report["quarantine_report"]).open(encoding="utf-8", newline="") as rows:
        entries = list(csv.DictReader(rows))
    assert (
        len({(e["file"], e["row"]) for e in entries if e["action"] == "quarantined"})
        == (report["quarantined_rows"])
    )
    assert sum(report["quarantine"]["by_reason"].values()) == len(entries)
