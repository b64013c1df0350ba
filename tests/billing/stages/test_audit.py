"""Auditor tools: verify agrees with an untouched archive and names every tampered invoice;
the last-six view survives backfills in any order."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import pipeline
from billing.runtime import Runtime
from billing.stages.audit import (
    READ_AHEAD,
    _check_objects,
    _compared_with_ledger,
    download_cycle,
    verify_cycle,
)
from billing.stages.view import last_invoices
from sample_data.generator import write_cycle
from storage.archive import open_archive, sha256_hex
from storage.ledger import invoice_documents, invoices, manifests, open_ledger, series_counters


@pytest.fixture
def two_cycles(issued_copy):
    """Cycles 2026-10 and 2026-11 issued and archived (a private copy of the session's)."""
    settings, _ = issued_copy
    return settings, open_ledger(settings.ledger_url), open_archive(settings.archive_url)


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)
    return path


def test_untouched_cycles_verify_and_chain(two_cycles):
    settings, engine, archive = two_cycles
    assert verify_cycle(engine, archive, "2026-11") == []
    assert verify_cycle(engine, archive, "2026-10") == []
    with engine.connect() as conn:
        chain = conn.execute(sa.select(manifests).order_by(manifests.c.seq)).all()
    assert [(m.cycle_id, m.seq) for m in chain] == [("2026-10", 1), ("2026-11", 2)]
    newest = json.loads(archive.get("manifests/2026-11.json"))
    assert newest["previous_sha256"] == sha256_hex(archive.get("manifests/2026-10.json"))
    assert json.loads(archive.get("manifests/2026-10.json"))["previous_sha256"] is None


def first_entry(archive, cycle_id="2026-11") -> dict:
    return json.loads(archive.get(f"manifests/{cycle_id}.json"))["invoices"][0]


def test_a_changed_pdf_is_named(two_cycles):
    settings, engine, archive = two_cycles
    entry = first_entry(archive)
    path = writable(settings.home / "archive" / entry["key"])
    path.write_bytes(path.read_bytes().replace(b"%PDF", b"%PDX", 1))
    problems = verify_cycle(engine, archive, "2026-11")
    assert problems == [
        f"invoice {entry['number']}: {entry['key']} sha256 {sha256_hex(path.read_bytes())[:12]}... differs from the manifest"
    ]


def test_a_deleted_pdf_is_named(two_cycles):
    settings, engine, archive = two_cycles
    entry = first_entry(archive)
    (settings.home / "archive" / entry["key"]).unlink()
    assert verify_cycle(engine, archive, "2026-11") == [
        f"invoice {entry['number']}: {entry['key']} is missing from the archive"
    ]


def test_an_edited_manifest_is_named_and_breaks_the_chain(two_cycles):
    settings, engine, archive = two_cycles
    path = writable(settings.home / "archive" / "manifests" / "2026-10.json")
    manifest = json.loads(path.read_bytes())
    number = manifest["invoices"][3]["number"]
    manifest["invoices"][3]["total"] = "1.00"
    path.write_text(json.dumps(manifest))
    problems = verify_cycle(engine, archive, "2026-10")
    assert any(
        "manifests/2026-10.json: sha256" in p and "the manifest was changed" in p for p in problems
    )
    assert any(p.startswith(f"invoice {number}: manifest total '1.00'") for p in problems)
    newer = verify_cycle(engine, archive, "2026-11")
    assert newer == [
        "manifest chain: manifests/2026-10.json was changed (sha256 differs from 2026-11's link)"
    ]


def test_a_gap_in_the_series_is_reported(two_cycles):
    settings, engine, archive = two_cycles
    with engine.begin() as conn:
        conn.execute(invoice_documents.delete().where(invoice_documents.c.number == "OR00000005"))
        conn.execute(sa.text("DELETE FROM efactura_documents WHERE number = 'OR00000005'"))
        conn.execute(sa.text("DELETE FROM invoice_lines WHERE number = 'OR00000005'"))
        conn.execute(sa.text("DELETE FROM invoice_vat WHERE number = 'OR00000005'"))
        conn.execute(invoices.delete().where(invoices.c.number == "OR00000005"))
    problems = verify_cycle(engine, archive, "2026-11")
    assert "series OR: 1 number(s) missing, first 5" in problems


def test_a_gap_at_the_first_number_and_a_number_beyond_the_counter_are_reported(two_cycles):
    settings, engine, archive = two_cycles
    with engine.begin() as conn:
        last = conn.execute(
            sa.select(series_counters.c.last_number).where(series_counters.c.series == "OR")
        ).scalar_one()
        conn.execute(invoices.update().where(invoices.c.seq == 1).values(seq=last + 5))
    problems = verify_cycle(engine, archive, "2026-10")
    assert "series OR: 1 number(s) missing, first 1" in problems
    assert f"series OR: number(s) beyond the counter, first {last + 5}" in problems


def test_a_manifest_that_is_not_json_is_named(two_cycles):
    settings, engine, archive = two_cycles
    path = writable(settings.home / "archive" / "manifests" / "2026-11.json")
    path.write_bytes(path.read_bytes()[:-200])  # cut short, as by a failed copy
    problems = verify_cycle(engine, archive, "2026-11")
    assert problems[0].startswith("manifests/2026-11.json: sha256")
    assert problems[1:] == ["manifests/2026-11.json: not valid JSON"]


FOREIGN = ("AA00000001", "OR99999999", "ZZ1")  # numbers no invoice of 2026-11 has


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_entry_missing_repeated_foreign_or_edited_is_named_once(two_cycles, data):
    """The ledger and the manifest are merged in number order without holding either: any
    edit of the entries (in order or shuffled) gives exactly the problems it should."""
    settings, engine, archive = two_cycles
    manifest = json.loads(archive.get("manifests/2026-11.json"))
    older = json.loads(archive.get("manifests/2026-10.json"))["invoices"][0]["number"]
    numbers = [e["number"] for e in manifest["invoices"]]
    entries = {e["number"]: e for e in manifest["invoices"]}
    picks = data.draw(st.lists(st.sampled_from([*numbers, *FOREIGN, older]), max_size=60))
    if data.draw(st.booleans()):
        picks.sort()
    edited = data.draw(st.sets(st.sampled_from(numbers), max_size=3))
    listed = [
        {**entries.get(n, {"number": n}), **({"total": "1.00"} if n in edited else {})}
        for n in picks
    ]
    problems: list[str] = []
    assert list(_compared_with_ledger(engine, "2026-11", listed, problems)) == listed
    expected = Counter(
        f"invoice {n}: in the ledger but not in the manifest" for n in set(numbers) - set(picks)
    )
    for at, n in enumerate(picks):
        if n not in entries:
            expected[f"invoice {n}: in the manifest but not in the ledger"] += 1
        elif n in picks[:at]:
            expected[f"invoice {n}: listed twice in the manifest"] += 1
        elif n in edited:
            expected[f"invoice {n}: manifest total '1.00' != ledger {entries[n]['total']!r}"] += 1
    assert Counter(problems) == expected


def test_objects_are_read_with_a_bounded_read_ahead(two_cycles):
    settings, engine, archive = two_cycles
    entries = json.loads(archive.get("manifests/2026-11.json"))["invoices"]
    lock, pulled, read, ahead = threading.Lock(), 0, 0, []

    def many() -> Iterator[dict]:
        nonlocal pulled
        for entry in entries * (2000 // len(entries) + 1):
            with lock:
                pulled += 1
                ahead.append(pulled - read)
            yield entry

    def fetch(key: str, version_id: str | None) -> bytes:
        nonlocal read
        data = archive.get(key, version_id)
        with lock:
            read += key.endswith(".pdf")  # an entry's PDF (its XML is read beside it)
        return data

    assert _check_objects(archive, many(), fetch=fetch) == []
    assert read == pulled > 2000
    assert max(ahead) <= READ_AHEAD + 1


def test_objects_no_invoice_owns_are_named(two_cycles):
    settings, engine, archive = two_cycles
    entry = first_entry(archive, "2026-10")
    root = settings.home / "archive"
    planted = [
        # the partial file a writer killed mid-write used to leave beside the PDF
        f"invoices/{entry['customer_id']}/.{entry['number']}.pdf.k3x9q2ab",
        "invoices/C9999999/OR99999999.pdf",  # no such invoice
        f"invoices/SOMEONE-ELSE/{entry['number']}.pdf",  # a real number, in the wrong folder
        "invoices/notes.txt",
        "efactura/C9999999/OR99999999.xml",
    ]
    for key in planted:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"%PDF-1.4 partial")
    stray = " in the archive, but no manifest lists it and the ledger records it as no invoice's"
    for cycle in ("2026-10", "2026-11"):  # the archive is one: either cycle's verify says it
        problems = verify_cycle(engine, archive, cycle)
        assert sorted(problems) == sorted(
            f"{key}:{stray} (a stray or partial object)" for key in planted
        )


def test_a_pdf_stored_by_a_run_in_progress_is_not_a_stray(settings_for):
    settings = settings_for()
    pipeline.run_cycle(Runtime(settings), "2026-10", run_id="done")
    runtime = Runtime(settings)
    pipeline.start_run(runtime, "2026-11", "running")
    pipeline.stage(runtime, "2026-11")
    pipeline.issue(runtime, "2026-11", "running")
    pipeline.archive_cycle(runtime, "2026-11", "running")
    engine, archive = open_ledger(settings.ledger_url), open_archive(settings.archive_url)
    with engine.begin() as conn:  # stored, not recorded yet
        number = conn.execute(
            sa.select(invoice_documents.c.number).where(invoice_documents.c.cycle_id == "2026-11")
        ).scalar()
        conn.execute(invoice_documents.delete().where(invoice_documents.c.number == number))
    assert verify_cycle(engine, archive, "2026-10") == []
    assert verify_cycle(engine, archive, "2026-11") == [
        "cycle 2026-11: the ledger records no manifest (cycle not finalized?)"
    ]


def test_download_writes_the_cycle_and_its_manifest(two_cycles, tmp_path):
    settings, engine, archive = two_cycles
    seen = []
    assert download_cycle(engine, archive, "2026-11", tmp_path / "dl", progress=seen.append) == []
    manifest = json.loads((tmp_path / "dl" / "manifests" / "2026-11.json").read_bytes())
    assert len(seen) == len(manifest["invoices"])  # one step an invoice
    for entry in manifest["invoices"]:
        assert sha256_hex((tmp_path / "dl" / entry["key"]).read_bytes()) == entry["sha256"]
        xml = entry["efactura"]
        assert sha256_hex((tmp_path / "dl" / xml["key"]).read_bytes()) == xml["sha256"]


def test_the_view_keeps_the_six_newest_whatever_order_cycles_are_run_in(settings_for, tmp_path):
    months = [
        "2026-03",
        "2026-10",
        "2026-05",
        "2026-11",
        "2026-04",
        "2026-08",
        "2026-06",
        "2026-07",
    ]
    for cycle_id in months:
        write_cycle(tmp_path / "cycles", cycle_id, 12, seed=5)
    settings = settings_for(source_url=tmp_path / "cycles")
    engine, archive = open_ledger(settings.ledger_url), open_archive(settings.archive_url)
    for cycle_id in months:  # newest cycles first, then backfills of older ones
        pipeline.run_cycle(Runtime(settings), cycle_id)
    view = last_invoices(engine, archive, "C0000003")
    assert [v["cycle_id"] for v in view] == [
        "2026-11",
        "2026-10",
        "2026-08",
        "2026-07",
        "2026-06",
        "2026-05",
    ]
    assert set(view[0]) == {
        "number",
        "cycle_id",
        "issue_date",
        "due_date",
        "total",
        "currency",
        "sha256",
        "url",
    }
    for item in view:
        assert sha256_hex(Path(item["url"]).read_bytes()) == item["sha256"]
    assert verify_cycle(engine, archive, "2026-06") == []


def test_verify_walks_a_postgresql_ledger_beside_its_lookups(settings_for, pg_url):
    """On PostgreSQL the ledger is read through a server-side cursor while out-of-order
    entries are looked up on the same connection."""
    settings = settings_for(ledger_url=pg_url)
    pipeline.run_cycle(Runtime(settings), "2026-11")
    engine, archive = open_ledger(settings.ledger_url), open_archive(settings.archive_url)
    assert verify_cycle(engine, archive, "2026-11") == []
    entries = json.loads(archive.get("manifests/2026-11.json"))["invoices"]
    shuffled = [*entries[1:50], entries[0], entries[3], *entries[50:]]
    problems: list[str] = []
    assert len(list(_compared_with_ledger(engine, "2026-11", shuffled, problems))) == len(shuffled)
    assert problems == [f"invoice {entries[3]['number']}: listed twice in the manifest"]
