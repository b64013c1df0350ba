"""The e-Factura XML in the cycle run (contract 7): made beside each PDF, archived once under
`efactura/<customer_id>/<number>.xml`, recorded with its size and sha256, listed in the cycle
manifest and checked by audit verify like the PDF; a re-run or a crash rewrites nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import date

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from billing import pipeline
from billing.cli import app
from billing.config import CHECKOUT
from billing.domain.errors import ConfigurationError
from billing.domain.layout import efactura_key
from billing.runtime import Runtime
from billing.stages.audit import verify_cycle
from renderers.efactura.ubl import check_supplier
from renderers.efactura.validation import Validator
from renderers.supplier import DEFAULT_PATH, load_supplier
from storage.archive import open_archive, sha256_hex
from storage.ledger import efactura_documents, invoices, manifests, open_ledger


def xml_rows(settings) -> dict[str, sa.Row]:
    with open_ledger(settings.ledger_url).connect() as conn:
        return {r.number: r for r in conn.execute(sa.select(efactura_documents))}


def without_xml(runtime: Runtime) -> Runtime:
    """The runtime of a release before the e-Factura XML: its renderer makes none."""
    runtime.__dict__["renderer"] = dataclasses.replace(runtime.renderer, efactura=None)
    return runtime


def test_every_invoice_gets_its_xml_archived_recorded_and_in_the_manifest(issued_copy):
    settings, reports = issued_copy
    report = reports[1]
    rows = xml_rows(settings)
    with open_ledger(settings.ledger_url).connect() as conn:
        owners = dict(
            conn.execute(
                sa.select(invoices.c.number, invoices.c.customer_id).where(
                    invoices.c.cycle_id == "2026-11"
                )
            ).all()
        )
    assert report["efactura_xmls"] == len(owners) and report["efactura_missing"] == 0
    validator = Validator()
    for number, customer_id in owners.items():
        row = rows[number]
        assert (row.key, row.state, row.cycle_id) == (
            efactura_key(customer_id, number),
            "pending",
            "2026-11",
        )
        data = (settings.home / "archive" / row.key).read_bytes()
        assert (len(data), sha256_hex(data)) == (row.size, row.sha256)
        assert f"<cbc:ID>{number}</cbc:ID>".encode() in data
        if number.endswith("7"):  # a sample of them through the three layers
            assert [f for f in validator.validate(data) if f.fatal] == []
    manifest = json.loads((settings.home / "archive" / "manifests" / "2026-11.json").read_bytes())
    for entry in manifest["invoices"]:
        row = rows[entry["number"]]
        assert entry["efactura"] == {
            "key": row.key, "size": row.size, "sha256": row.sha256, "version_id": row.version_id
        }  # fmt: skip


def test_a_rerun_or_a_crash_before_recording_rewrites_no_xml(settings_for):
    settings = settings_for()
    runtime = Runtime(settings)
    pipeline.start_run(runtime, "2026-11", "killed")
    pipeline.stage(runtime, "2026-11")
    pipeline.issue(runtime, "2026-11", "killed")
    pipeline.archive_cycle(runtime, "2026-11", "killed")
    before = xml_rows(settings)
    files = {
        p: p.stat().st_mtime_ns for p in (settings.home / "archive" / "efactura").rglob("*.xml")
    }
    assert len(files) == len(before) > 0
    lost = sorted(before)[:15]
    with open_ledger(settings.ledger_url).begin() as conn:  # stored, not recorded: the crash
        conn.execute(efactura_documents.delete().where(efactura_documents.c.number.in_(lost)))

    report = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="again", send_notices=False)
    after = xml_rows(settings)
    assert report["efactura_missing"] == 0 and report["pdfs_archived"] == 0
    assert sorted(n for n, r in after.items() if r.recovered) == lost
    assert {n: (r.key, r.sha256) for n, r in after.items()} == {
        n: (r.key, r.sha256) for n, r in before.items()
    }
    assert {p: p.stat().st_mtime_ns for p in files} == files  # not one file written again
    manifest = json.loads((settings.home / "archive" / "manifests" / "2026-11.json").read_bytes())
    assert all("efactura" in entry for entry in manifest["invoices"])
    third = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="third", send_notices=False)
    assert third["manifest"] == report["manifest"] and xml_rows(settings) == after


def test_a_cycle_closed_before_the_xml_gets_its_xmls_and_keeps_its_manifest(settings_for):
    settings = settings_for()
    old = pipeline.run_cycle(without_xml(Runtime(settings)), "2026-11", "old", send_notices=False)
    assert old["efactura_xmls"] == 0 and old["efactura_missing"] == old["invoices_issued"]
    assert any("no e-Factura XML" in warning for warning in old["warnings"])
    manifest = (settings.home / "archive" / "manifests" / "2026-11.json").read_bytes()
    assert b'"efactura"' not in manifest

    new = pipeline.run_cycle(Runtime(settings), "2026-11", "upgraded", send_notices=False)
    assert new["efactura_xmls"] == old["invoices_issued"] and new["efactura_missing"] == 0
    assert new["pdfs_archived"] == 0 and new["manifest"] == old["manifest"]
    assert (settings.home / "archive" / "manifests" / "2026-11.json").read_bytes() == manifest
    engine = open_ledger(settings.ledger_url)
    assert verify_cycle(engine, open_archive(settings.archive_url), "2026-11") == []


def test_audit_verify_names_an_xml_changed_or_gone(issued_copy):
    settings, _ = issued_copy
    engine, archive = open_ledger(settings.ledger_url), open_archive(settings.archive_url)
    rows = sorted((r for r in xml_rows(settings).values() if r.cycle_id == "2026-11"),
                  key=lambda r: r.number)  # fmt: skip
    changed, gone = rows[3], rows[4]
    path = settings.home / "archive" / changed.key
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b"RO-", b"RO_", 1))
    (settings.home / "archive" / gone.key).unlink()
    problems = verify_cycle(engine, archive, "2026-11")
    assert f"invoice {changed.number}: {changed.key} sha256" in "\n".join(problems)
    assert f"invoice {gone.number}: {gone.key} is missing from the archive" in problems
    with engine.begin() as conn:  # the ledger's record edited: the manifest disagrees
        conn.execute(
            efactura_documents.update()
            .where(efactura_documents.c.number == rows[5].number)
            .values(sha256="0" * 64)
        )
    problems = verify_cycle(engine, archive, "2026-11")
    assert any(
        p.startswith(f"invoice {rows[5].number}: manifest efactura sha256") for p in problems
    )
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(manifests)).scalar() == 2


def test_a_supplier_file_without_its_postal_address_still_issues_and_warns(
    settings_for, tmp_path, caplog
):
    supplier = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    del supplier["postal_address"]
    path = tmp_path / "supplier.json"
    path.write_text(json.dumps(supplier, ensure_ascii=False))
    settings = settings_for(supplier_file=path)
    report = pipeline.run_cycle(Runtime(settings), "2026-11", "no-address", send_notices=False)
    # the invoices and their PDFs go out; the missing XMLs are warned of, naming the cause
    assert report["pdfs_archived"] == report["invoices_issued"] > 0
    assert report["efactura_xmls"] == 0
    assert report["efactura_missing"] == report["invoices_issued"]
    assert any("no e-Factura XML" in warning for warning in report["warnings"])
    assert "postal_address" in caplog.text
    with pytest.raises(ConfigurationError, match="postal_address"):
        check_supplier(load_supplier(path))


# --- validation, fail closed -------------------------------------------------------------------


def test_the_cycle_run_validates_its_xmls_and_its_report_names_the_invalid_ones(
    settings_for, tmp_path
):
    supplier = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    supplier["postal_address"]["street"] = "Bd. Ion Mihalache " + "nr. 15–17 " * 15  # 168 chars
    path = tmp_path / "supplier.json"
    path.write_text(json.dumps(supplier, ensure_ascii=False))
    settings = settings_for(supplier_file=path)
    report = pipeline.run_cycle(Runtime(settings), "2026-11", "long-street", send_notices=False)
    # the invoices go out; every XML breaks the seller's street length, and none is uploaded
    assert report["pdfs_archived"] == report["invoices_issued"] == report["efactura_xmls"] > 0
    assert report["efactura_invalid"] == report["efactura_xmls"]
    assert report["efactura_valid"] == report["efactura_unvalidated"] == 0
    examples = report["efactura_invalid_examples"]
    assert len(examples) == 20  # the first ones, in number order
    assert [e["number"] for e in examples] == sorted(e["number"] for e in examples)
    assert all(any(r.startswith("[BR-RO-L150]") for r in e["rules"]) for e in examples)
    assert any("break ANAF's rules" in w and "efactura status 2026-11" in w
               for w in report["warnings"])  # fmt: skip
    text = pipeline.format_report(report)
    assert f"invalid e-Factura XMLs (20 of {report['efactura_invalid']}, not uploaded)" in text
    assert {r.state for r in xml_rows(settings).values()} == {"invalid"}


def test_validation_passes_the_samples_and_keeps_an_invalid_or_changed_xml_from_upload(
    issued_copy, monkeypatch
):
    settings, _ = issued_copy
    rows = sorted((r for r in xml_rows(settings).values() if r.cycle_id == "2026-11"),
                  key=lambda r: r.number)  # fmt: skip
    assert all(r.validated_at is not None and r.state == "pending" for r in rows)  # the run's
    with open_ledger(settings.ledger_url).begin() as conn:  # as archived, before validation
        conn.execute(
            efactura_documents.update()
            .where(efactura_documents.c.cycle_id == "2026-11")
            .values(validated_at=None, findings="")
        )
    broken, changed = rows[0], rows[1]
    # an XML recorded as it is in the archive, that breaks a CIUS-RO rule (re-recorded so its
    # sha256 matches), and one changed in the archive after it was recorded
    path = settings.home / "archive" / broken.key
    os.chmod(path, 0o644)
    data = path.read_bytes().replace(b"<cbc:CountrySubentity>RO-", b"<cbc:CountrySubentity>X-")
    path.write_bytes(data)
    with open_ledger(settings.ledger_url).begin() as conn:
        conn.execute(
            efactura_documents.update()
            .where(efactura_documents.c.number == broken.number)
            .values(sha256=sha256_hex(data), size=len(data))
        )
    path = settings.home / "archive" / changed.key
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes() + b"\n")

    result = pipeline.validate_efactura(Runtime(settings), "2026-11")
    assert (result.valid, result.invalid) == (len(rows) - 2, 2)
    after = xml_rows(settings)
    assert after[broken.number].state == after[changed.number].state == "invalid"
    assert {f["rule"] for f in json.loads(after[broken.number].findings)} >= {"BR-RO-110"}
    assert [f["rule"] for f in json.loads(after[changed.number].findings)] == ["ARCHIVE"]
    assert all(after[r.number].validated_at is not None for r in rows)
    assert all(after[r.number].state == "pending" for r in rows[2:])  # ready to upload
    assert pipeline.validate_efactura(Runtime(settings), "2026-11").valid == 0  # done once

    status = pipeline.efactura_status(Runtime(settings), "2026-11")
    assert status["states"] == {"invalid": 2, "pending validated": len(rows) - 2}
    assert [i["number"] for i in status["invalid"]] == [broken.number, changed.number]
    assert any(rule.startswith("[BR-RO-110]") for rule in status["invalid"][0]["rules"])

    monkeypatch.setenv("INVOICES_HOME", str(settings.home))
    monkeypatch.setenv("INVOICES_SOURCE_URL", str(settings.source_url))
    shown = CliRunner().invoke(app, ["efactura", "status", "2026-11"])
    assert shown.exit_code == 1, shown.output
    assert f"{broken.number} (2026-11): invalid" in shown.output and "[BR-RO-110]" in shown.output
    other = CliRunner().invoke(app, ["efactura", "validate", "2026-10"])
    assert other.exit_code == 0 and "valid, 0 invalid" in other.output, other.output


def test_validator_processes_give_the_findings_of_validating_here(settings_for):
    settings = settings_for(render_processes=2)
    runtime = Runtime(settings)
    with runtime.validator_processes() as validators:
        assert validators is not None
    report = pipeline.run_cycle(runtime, "2026-10", "r", send_notices=False)  # in 2 processes
    with Runtime(settings).validator_processes() as again:  # started once a process
        assert again is validators and not validators._broken  # noqa: SLF001
    assert report["efactura_valid"] == report["efactura_xmls"] == len(xml_rows(settings)) > 0
    there = {n: (r.state, r.findings) for n, r in xml_rows(settings).items()}
    with open_ledger(settings.ledger_url).begin() as conn:
        conn.execute(efactura_documents.update().values(validated_at=None, findings="x"))
    here = Runtime(replace(settings, render_processes=1))
    assert pipeline.validate_efactura(here, "2026-10").valid == len(there)
    assert {n: (r.state, r.findings) for n, r in xml_rows(settings).items()} == there


MAIN_SCRIPT = """
import sys
if __name__ != "__main__":  # as multiprocessing's spawn would run it in each child
    sys.exit("the main script ran again in a validator process")
from billing.config import Settings
from billing.runtime import Runtime
from billing.stages.efactura import findings_of

settings = Settings.from_env({"INVOICES_HOME": sys.argv[1], "INVOICES_RENDER_PROCESSES": "2"})
with Runtime(settings).validator_processes() as pool:
    print(pool.submit(findings_of, [None]).result(), pool.submit(findings_of, [None]).result())
"""


def test_validator_processes_do_not_run_the_parents_main_script_again(tmp_path):
    # A task's main script is Airflow's command line, which must not start again in a child:
    # a task process refuses Airflow's database, and importing Airflow reads that setting.
    script = tmp_path / "main_script.py"
    script.write_text(MAIN_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "home")], cwd=CHECKOUT,
        env=os.environ | {"PYTHONPATH": str(CHECKOUT)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ARCHIVE") == 2


def test_invoices_close_to_or_past_their_deadline_are_listed_and_fail_the_status(
    issued_copy, monkeypatch
):
    settings, _ = issued_copy
    runtime = Runtime(settings)
    # 2026-11 was issued on Sunday 1 November: due Friday 6; 2026-10 on 1 October: due 8
    on_thursday = pipeline.efactura_status(runtime, today=date(2026, 11, 5))["deadlines"]
    assert [(d["issue_date"], d["deadline"], d["working_days_left"]) for d in on_thursday] == [
        ("2026-10-01", "2026-10-08", -20), ("2026-11-01", "2026-11-06", 1),
    ]  # fmt: skip
    november = on_thursday[1]
    assert november["states"] == {"pending": november["invoices"]} and november["invoices"] > 250
    assert november["first"] == sorted(november["first"]) and len(november["first"]) == 5
    on_monday = pipeline.efactura_status(runtime, "2026-11", today=date(2026, 11, 2))
    assert on_monday["deadlines"] == []  # four working days to go
    with open_ledger(settings.ledger_url).begin() as conn:  # accepted ones are done
        conn.execute(
            efactura_documents.update()
            .where(efactura_documents.c.cycle_id == "2026-10")
            .values(state="accepted")
        )
    late = pipeline.efactura_status(runtime, today=date(2026, 11, 5))["deadlines"]
    assert [d["issue_date"] for d in late] == ["2026-11-01"]
