"""Render + archive: each invoice's PDF is written once, recorded with size and sha256, and a
re-run (or a crash between storing and recording) rewrites nothing."""

from __future__ import annotations

import dataclasses
import json
import os

import psutil
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import pipeline
from billing.domain.errors import ArchiveError
from billing.domain.layout import invoice_key
from billing.runtime import Renderer, Runtime
from billing.stages.archiving import manifest_bytes, manifest_chunks
from renderers.pdf import TEMPLATE_VERSION
from storage.archive import sha256_hex
from storage.ledger import invoice_documents, invoices, open_ledger


def documents(settings) -> dict[str, tuple]:
    with open_ledger(settings.ledger_url).connect() as conn:
        rows = conn.execute(sa.select(invoice_documents)).all()
    return {r.number: (r.key, r.size, r.sha256, r.template_version) for r in rows}


def test_cycle_run_archives_one_pdf_per_invoice_and_a_manifest(settings_for):
    settings = settings_for()
    report = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1")
    archive_root = settings.home / "archive"
    docs = documents(settings)
    assert report["pdfs_archived"] == report["invoices_issued"] == len(docs) > 0
    with open_ledger(settings.ledger_url).connect() as conn:
        owners = dict(conn.execute(sa.select(invoices.c.number, invoices.c.customer_id)).all())
    for number, (key, size, sha, template) in docs.items():
        assert key == invoice_key(owners[number], number)
        data = (archive_root / key).read_bytes()
        assert data.startswith(b"%PDF") and len(data) == size and sha256_hex(data) == sha
        assert template == TEMPLATE_VERSION

    manifest_path = archive_root / "manifests" / "2026-11.json"
    manifest = json.loads(manifest_path.read_bytes())
    assert manifest_bytes(manifest) == manifest_path.read_bytes()
    assert report["manifest"]["sha256"] == sha256_hex(manifest_path.read_bytes())
    assert [e["number"] for e in manifest["invoices"]] == sorted(docs)
    entry = manifest["invoices"][0]
    assert (entry["key"], entry["size"], entry["sha256"]) == docs[entry["number"]][:3]
    assert set(entry) >= {
        "number",
        "customer_id",
        "issue_date",
        "total",
        "key",
        "size",
        "sha256",
        "version_id",
    }


def test_rerun_and_crash_recovery_rewrite_nothing(settings_for):
    settings = settings_for()
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1")
    before = documents(settings)
    files = {p: p.stat() for p in (settings.home / "archive" / "invoices").rglob("*.pdf")}

    # a crash after the PDFs were stored but before they were recorded
    lost = sorted(before)[:25]
    with open_ledger(settings.ledger_url).begin() as conn:
        conn.execute(invoice_documents.delete().where(invoice_documents.c.number.in_(lost)))

    again = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-2")
    # the 25 PDFs were found in the archive, not written by run-2
    assert (again["invoices_issued"], again["pdfs_archived"], again["pdfs_recovered"]) == (
        0,
        0,
        25,
    )
    assert again["pdfs_existing"] == len(before)
    assert documents(settings) == before
    for path, stat in files.items():
        assert path.stat().st_ino == stat.st_ino and path.stat().st_mtime_ns == stat.st_mtime_ns

    third = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-3")
    assert (third["invoices_issued"], third["pdfs_archived"], third["pdfs_existing"]) == (
        0,
        0,
        len(before),
    )
    assert third["pdfs_recovered"] == 0


def test_a_resumed_run_counts_what_it_wrote_apart_from_what_it_found(settings_for, ledger_url):
    """A run killed after uploading PDFs but before recording some of them, then a run under
    another run id: the report says what the second run wrote and what it found done."""
    settings = settings_for(ledger_url=ledger_url)
    runtime = Runtime(settings)
    pipeline.start_run(runtime, "2026-11", "killed")
    pipeline.stage(runtime, "2026-11")
    pipeline.issue(runtime, "2026-11", "killed")
    pipeline.archive_cycle(runtime, "2026-11", "killed")
    engine = open_ledger(settings.ledger_url)
    with engine.connect() as conn:
        numbers = sorted(conn.execute(sa.select(invoice_documents.c.number)).scalars())
        query = sa.select(invoice_documents.c.number, invoice_documents.c.key)
        keys = {r.number: r.key for r in conn.execute(query)}
    unrecorded, never_uploaded = numbers[:40], numbers[40:50]
    with engine.begin() as conn:  # the crash window: stored, not recorded; not stored at all
        conn.execute(
            invoice_documents.delete().where(
                invoice_documents.c.number.in_(unrecorded + never_uploaded)
            )
        )
    for number in never_uploaded:
        (settings.home / "archive" / keys[number]).unlink()

    report = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="resumed")
    assert (report["invoices_issued"], report["invoices_existing"]) == (0, len(numbers))
    assert report["pdfs_archived"] == len(never_uploaded)
    assert report["pdfs_recovered"] == len(unrecorded)
    assert report["pdfs_existing"] == len(numbers) - len(never_uploaded)
    assert report["pdfs_archived"] + report["pdfs_existing"] == len(numbers)
    with engine.connect() as conn:
        recovered = set(
            conn.execute(
                sa.select(invoice_documents.c.number).where(invoice_documents.c.recovered)
            ).scalars()
        )
    assert recovered == set(unrecorded)


def test_an_invoice_that_cannot_render_fails_the_chunk_after_the_others(settings_for, monkeypatch):
    from renderers import pdf

    settings = settings_for()
    pipeline.start_run(Runtime(settings), "2026-11", "run-1")
    pipeline.stage(Runtime(settings), "2026-11")
    pipeline.issue(Runtime(settings), "2026-11", "run-1")
    real = pdf.render_invoice

    def render(invoice, supplier):
        if invoice.number == "OR00000007":
            raise pdf.RenderError("customer name: U+1F680 '🚀' cannot be drawn")
        return real(invoice, supplier)

    monkeypatch.setattr(pdf, "render_invoice", render)
    with pytest.raises(
        ArchiveError, match=r"1 invoice\(s\) of cycle 2026-11 were not archived .*OR00000007"
    ):
        pipeline.archive_cycle(Runtime(settings), "2026-11", "run-1")
    docs = documents(settings)
    assert "OR00000007" not in docs and len(docs) == 300
    with pytest.raises(ArchiveError, match="have no archived PDF yet"):
        pipeline.finalize_report(Runtime(settings), "2026-11", "run-1")


def render_or_refuse(invoice, supplier):
    """The real renderer, refusing one invoice (module-level: it is sent to render processes)."""
    from renderers import pdf

    if invoice.number == "OR00000007":
        raise pdf.RenderError("customer name: U+1F680 '🚀' cannot be drawn")
    return pdf.render_invoice(invoice, supplier)


def test_render_processes_archive_the_same_bytes_as_one_process(settings_for):
    alone, pooled = settings_for(), settings_for(home=settings_for().home.parent / "pooled")
    pooled = dataclasses.replace(pooled, render_processes=2)
    runtime = Runtime(pooled)
    for rt in (Runtime(alone), runtime):
        pipeline.start_run(rt, "2026-11", "run-1")
        pipeline.stage(rt, "2026-11")
        pipeline.issue(rt, "2026-11", "run-1")
        assert pipeline.archive_cycle(rt, "2026-11", "run-1").archived == 301
    with runtime.render_processes() as pool:
        workers = {pool.submit(os.getpid).result() for _ in range(20)}
        assert os.getpid() not in workers
    # they end with the chunk: a task process leaves none behind
    assert not any(psutil.pid_exists(pid) for pid in workers)

    assert documents(pooled) == documents(alone)
    for key, *_ in documents(pooled).values():
        assert (pooled.home / "archive" / key).read_bytes() == (
            alone.home / "archive" / key
        ).read_bytes()


def test_render_processes_read_a_postgresql_ledger_on_connections_of_their_own(
    settings_for, pg_url
):
    """Render processes load their invoices themselves: forked children start new pools, so
    the parent's pooled connections stay the parent's and keep working."""
    settings = dataclasses.replace(settings_for(ledger_url=pg_url), render_processes=2)
    runtime = Runtime(settings)
    pipeline.start_run(runtime, "2026-11", "run-1")
    pipeline.stage(runtime, "2026-11")
    pipeline.issue(runtime, "2026-11", "run-1")
    assert pipeline.archive_cycle(runtime, "2026-11", "run-1").archived == 301
    assert pipeline.archive_cycle(runtime, "2026-11", "run-1").archived == 0  # the same pool
    assert len(documents(settings)) == 301


def test_an_invoice_that_a_render_process_cannot_render_fails_alone(settings_for):
    settings = dataclasses.replace(settings_for(), render_processes=2)
    runtime = Runtime(settings)
    pipeline.start_run(runtime, "2026-11", "run-1")
    pipeline.stage(runtime, "2026-11")
    pipeline.issue(runtime, "2026-11", "run-1")
    runtime.renderer = Renderer(render_or_refuse, runtime.renderer.template_version)

    with pytest.raises(
        ArchiveError, match=r"1 invoice\(s\) of cycle 2026-11 were not archived .*OR00000007"
    ):
        pipeline.archive_cycle(runtime, "2026-11", "run-1")
    docs = documents(settings)
    assert "OR00000007" not in docs and len(docs) == 300


_entry = st.fixed_dictionaries(
    {
        "number": st.text(min_size=1, max_size=12),
        "customer_id": st.text(max_size=12),
        "size": st.integers(min_value=0, max_value=10**9),
        "version_id": st.none() | st.text(max_size=8),
        "total": st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
    }
)


@settings(max_examples=60, deadline=None)
@given(
    cycle_id=st.text(max_size=10),
    previous=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    entries=st.lists(_entry, max_size=5),
)
def test_the_streamed_manifest_has_the_canonical_bytes(cycle_id, previous, entries):
    streamed = b"".join(manifest_chunks(cycle_id, previous, iter(entries)))
    canonical = {"cycle_id": cycle_id, "previous_sha256": previous, "invoices": entries}
    assert streamed == manifest_bytes(canonical)
    assert json.loads(streamed) == canonical
