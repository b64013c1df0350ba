"""Render each issued invoice to PDF once, archive it, and record it in the ledger, with its
e-Factura XML (contract 7) beside it; then the cycle manifest.

Idempotent and crash-safe: a chunk re-run renders only invoices without a document row; an
invoice rendered and stored before a crash, but not yet recorded, renders to the same bytes
again (rendering is deterministic), so the archive's write-once check passes and the row is
written, marked `recovered` (this run found the PDF, it did not write it).
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from billing.domain.errors import ArchiveError, InvoicePipelineError
from billing.domain.layout import efactura_key, invoice_key, manifest_key, retention_end
from billing.domain.model import IssuedInvoice, Supplier
from billing.stages.progress import NO_PROGRESS, Progress
from storage.archive import Archive, StoredObject
from storage.invoice_records import documents_missing, load_invoices
from storage.ledger import (
    cycles,
    efactura_documents,
    invoice_documents,
    invoices,
    lock_manifest_chain,
    manifests,
    open_ledger,
)

Renderer = Callable[[IssuedInvoice, Supplier], bytes]
XmlMaker = Callable[[IssuedInvoice, Supplier], bytes]  # renderers.efactura.ubl.invoice_xml
BATCH = 100
UPLOADERS = 8  # concurrent archive writes per chunk
RENDER_SPLIT = 4  # pieces a batch is cut into for the render processes
LOOKAHEAD = 2  # batches handed to the render processes ahead of the one being stored


@dataclass(frozen=True)
class ArchiveResult:
    """PDFs this call wrote to the archive and recorded (`archived`), and PDFs it found already
    archived without a ledger row, left by a run that crashed before recording them, and
    recorded (`recovered`)."""

    archived: int = 0
    recovered: int = 0

    def __add__(self, other: ArchiveResult) -> ArchiveResult:
        return ArchiveResult(self.archived + other.archived, self.recovered + other.recovered)


def archive_invoices(
    engine: Engine,
    archive: Archive,
    cycle_id: str,
    customer_ids: Sequence[str],
    run_id: str,
    supplier: Supplier,
    render: Renderer,
    template_version: str,
    retention_years: int,
    uploaders: int = UPLOADERS,
    renderers: Executor | None = None,
    progress: Progress = NO_PROGRESS,
    make_xml: XmlMaker | None = None,
) -> ArchiveResult:
    """Render and archive the invoices of `customer_ids` in the cycle that have no document yet,
    and with `make_xml` (module-level, like `render`) their e-Factura XML where it is missing.

    Rendering is CPU-bound: it runs in `renderers` (a process pool, `render` must then be a
    module-level function) or else in this thread. With a pool, the next batches render while
    this thread stores and records the one before; uploads overlap in a bounded thread pool.
    Results are recorded batch by batch, in order, whatever ran where.
    """
    with engine.connect() as conn:
        missing = documents_missing(conn, cycle_id, customer_ids, xml=make_xml is not None)
    pending = [number for number, _, _ in missing]
    have_pdf = frozenset(number for number, pdf, _ in missing if not pdf)
    have_xml = frozenset(number for number, _, xml in missing if not xml)
    progress.begin(len(pending))
    result = ArchiveResult()
    failures: list[str] = []
    ahead = LOOKAHEAD if renderers is not None else 0
    in_flight: deque[tuple[Sequence[str], list[Future]]] = deque()
    with ThreadPoolExecutor(max_workers=uploaders, thread_name_prefix="archive") as pool:

        def store_until(kept: int) -> None:
            """Store the oldest rendered batches until `kept` remain in flight."""
            nonlocal result
            while len(in_flight) > kept:
                batch, rendering = in_flight.popleft()
                result += _store(engine, archive, pool, batch, rendering, cycle_id, run_id,
                                 template_version, retention_years, failures)  # fmt: skip
                progress.advance(len(batch))

        ledger_url = engine.url.render_as_string(hide_password=False)
        for start in range(0, len(pending), BATCH):
            batch = pending[start : start + BATCH]
            rendering = _start_rendering(
                renderers, render, ledger_url, batch, supplier, make_xml,
                have_pdf.intersection(batch), have_xml.intersection(batch),
            )  # fmt: skip
            in_flight.append((batch, rendering))
            store_until(ahead)
        store_until(0)
    if failures:
        shown = "; ".join(failures[:5]) + ("; ..." if len(failures) > 5 else "")
        raise ArchiveError(
            f"{len(failures)} invoice(s) of cycle {cycle_id} were not archived "
            f"({result.archived + result.recovered} were): {shown}"
        )
    return result


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a render process sends back for one invoice: where it goes, its PDF or the text of
    the `InvoicePipelineError` that stopped it (both None: its PDF was archived already), and
    likewise its e-Factura XML."""

    number: str
    customer_id: str
    issue_date: date
    pdf: bytes | None
    error: str | None = None
    xml: bytes | None = None
    xml_error: str | None = None


def render_batch(
    render: Renderer,
    ledger_url: str,
    numbers: Sequence[str],
    supplier: Supplier,
    make_xml: XmlMaker | None = None,
    have_pdf: frozenset[str] = frozenset(),
    have_xml: frozenset[str] = frozenset(),
) -> list[Rendered]:
    """Load the invoices `numbers` from the ledger and render each (one bad invoice must not
    hold up the rest): its PDF unless in `have_pdf`, its XML with `make_xml` unless in
    `have_xml`. Runs in a render process, which reads its own invoices so that the process
    storing them does not spend its time building them; or in this one."""
    with open_ledger(ledger_url).connect() as conn:
        batch = load_invoices(conn, numbers)
    rendered = []
    for invoice in batch:
        pdf = error = xml = xml_error = None
        if invoice.number not in have_pdf:
            try:
                pdf = render(invoice, supplier)
            except InvoicePipelineError as exc:
                error = str(exc) or type(exc).__name__
        if make_xml is not None and invoice.number not in have_xml:
            try:
                xml = make_xml(invoice, supplier)
            except (InvoicePipelineError, ValueError) as exc:
                xml_error = str(exc) or type(exc).__name__
        where = (invoice.number, invoice.customer.customer_id, invoice.issue_date)
        rendered.append(Rendered(*where, pdf, error, xml, xml_error))
    return rendered


def _start_rendering(
    renderers: Executor | None,
    render: Renderer,
    ledger_url: str,
    batch: Sequence[str],
    supplier: Supplier,
    make_xml: XmlMaker | None = None,
    have_pdf: frozenset[str] = frozenset(),
    have_xml: frozenset[str] = frozenset(),
) -> list[Future]:
    """Futures of the batch's PDFs in order: split over the pool's processes, or rendered here."""
    extra = (make_xml, have_pdf, have_xml)
    if renderers is None:
        done: Future = Future()
        done.set_result(render_batch(render, ledger_url, batch, supplier, *extra))
        return [done]
    size = max(1, -(-len(batch) // RENDER_SPLIT))
    return [
        renderers.submit(render_batch, render, ledger_url, batch[i : i + size], supplier, *extra)
        for i in range(0, len(batch), size)
    ]


def _store(
    engine, archive, pool, batch, rendering, cycle_id, run_id, template_version, retention_years,
    failures,
) -> ArchiveResult:  # fmt: skip
    """Upload one rendered batch (in the upload pool) and record its documents."""
    rendered = [item for future in rendering for item in future.result()]
    uploads = []
    for item in rendered:
        retain = retention_end(item.issue_date, retention_years)
        if item.error is not None:
            failures.append(f"{item.number}: {item.error}")
        elif item.pdf is not None:
            key = invoice_key(item.customer_id, item.number)
            uploads.append((item, "pdf", pool.submit(archive.put_once, key, item.pdf, retain)))
        if item.xml_error is not None:
            failures.append(f"{item.number}: e-Factura XML: {item.xml_error}")
        elif item.xml is not None:
            key = efactura_key(item.customer_id, item.number)
            uploads.append((item, "xml", pool.submit(archive.put_once, key, item.xml, retain)))
    documents, xmls = [], []
    for item, kind, upload in uploads:
        try:
            stored = upload.result()
        except InvoicePipelineError as exc:
            failures.append(f"{item.number}: {exc}")
            continue
        if kind == "pdf":
            documents.append(_document_row(item.number, stored, cycle_id, template_version, run_id))
        else:
            xmls.append(_efactura_row(item, stored, cycle_id, run_id))
    return _record(engine, documents, xmls)


def _document_row(number, stored: StoredObject, cycle_id, template_version, run_id) -> dict:
    return {
        "number": number,
        "cycle_id": cycle_id,
        "template_version": template_version,
        "key": stored.key,
        "size": stored.size,
        "sha256": stored.sha256,
        "version_id": stored.version_id,
        "archived_at": datetime.now(UTC),
        "run_id": run_id,
        "recovered": stored.existed,
    }


def _efactura_row(item: Rendered, stored: StoredObject, cycle_id: str, run_id: str) -> dict:
    now = datetime.now(UTC)
    return {
        "number": item.number, "cycle_id": cycle_id, "customer_id": item.customer_id,
        "key": stored.key, "size": stored.size, "sha256": stored.sha256,
        "version_id": stored.version_id, "archived_at": now, "run_id": run_id,
        "recovered": stored.existed, "state": "pending", "state_at": now, "findings": "",
    }  # fmt: skip


def _record(engine: Engine, rows: list[dict], xmls: Sequence[dict] = ()) -> ArchiveResult:
    """Insert document rows (and e-Factura rows); a row another worker recorded first is left
    as it is (and not counted here)."""
    counts = {}
    with engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        # counted by RETURNING: a batched insert's rowcount is -1 on PostgreSQL (psycopg)
        statement = (
            insert(invoice_documents)
            .on_conflict_do_nothing(index_elements=["number"])
            .returning(invoice_documents.c.number)
        )
        for recovered in (False, True):
            group = [row for row in rows if row["recovered"] is recovered]
            counts[recovered] = len(conn.execute(statement, group).all()) if group else 0
        if xmls:
            conn.execute(
                insert(efactura_documents).on_conflict_do_nothing(index_elements=["number"]),
                list(xmls),
            )
    return ArchiveResult(archived=counts[False], recovered=counts[True])


MANIFEST_ROWS = 5000  # ledger rows read per batch while the manifest is written


def write_manifest(
    conn: Connection,
    cycle_id: str,
    previous_sha256: str | None,
    out: BinaryIO,
    as_of: datetime | None = None,
) -> int:
    """Writes the cycle manifest (contract 4) to `out`, in its canonical bytes (`manifest_bytes`),
    reading the ledger a batch of rows at a time: nothing in memory grows with the cycle. Returns
    the number of invoices. Raises ArchiveError when an invoice has no archived PDF yet.

    An entry whose invoice has its e-Factura XML archived (by `as_of`, when given: a manifest
    written before is rebuilt as it was) carries it as `"efactura": {"key", "size", "sha256",
    "version_id"}` (contract 7); an invoice without one has no `efactura` key."""
    without = (
        sa.select(sa.func.count(), sa.func.min(invoices.c.number))
        .select_from(invoices.outerjoin(invoice_documents))
        .where(invoices.c.cycle_id == cycle_id, invoice_documents.c.key.is_(None))
    )
    missing, first = conn.execute(without).one()
    if missing:
        raise ArchiveError(
            f"cycle {cycle_id}: {missing} invoice(s) have no archived PDF yet "
            f"(first: {first}); run the render step again before the manifest"
        )
    xml = efactura_documents.alias("xml")
    joined = xml.c.number == invoices.c.number
    if as_of is not None:
        joined &= xml.c.archived_at <= as_of
    query = (
        sa.select(
            invoices.c.number, invoices.c.customer_id, invoices.c.issue_date, invoices.c.total,
            invoice_documents.c.key, invoice_documents.c.size, invoice_documents.c.sha256,
            invoice_documents.c.version_id, invoice_documents.c.template_version,
            xml.c.key.label("xml_key"), xml.c.size.label("xml_size"),
            xml.c.sha256.label("xml_sha256"), xml.c.version_id.label("xml_version_id"),
        )
        .select_from(invoices.join(invoice_documents).outerjoin(xml, joined))
        .where(invoices.c.cycle_id == cycle_id)
        .order_by(number_order(conn.engine))
    )  # fmt: skip
    written = 0

    def entries() -> Iterator[dict]:
        nonlocal written
        for r in conn.execute(query.execution_options(yield_per=MANIFEST_ROWS)):
            written += 1
            entry = {
                "number": r.number, "customer_id": r.customer_id,
                "issue_date": r.issue_date.isoformat(), "total": f"{r.total:.2f}", "key": r.key,
                "size": r.size, "sha256": r.sha256, "version_id": r.version_id,
                "template_version": r.template_version,
            }  # fmt: skip
            if r.xml_key is not None:
                entry["efactura"] = {
                    "key": r.xml_key, "size": r.xml_size, "sha256": r.xml_sha256,
                    "version_id": r.xml_version_id,
                }  # fmt: skip
            yield entry

    for chunk in manifest_chunks(cycle_id, previous_sha256, entries()):
        out.write(chunk)
    return written


def number_order(engine: Engine) -> sa.ColumnElement:
    """Invoice numbers in code-point order, the order a manifest lists them in and Python's
    `<` compares them in: PostgreSQL's own order follows the database's collation."""
    if engine.dialect.name == "postgresql":
        return invoices.c.number.collate("C")
    return invoices.c.number


def manifest_chunks(
    cycle_id: str, previous_sha256: str | None, entries: Iterable[dict]
) -> Iterator[bytes]:
    """The bytes of `manifest_bytes({"cycle_id", "previous_sha256", "invoices": entries})`, a
    piece at a time: the keys in sorted order, laid out as json.dumps(indent=1) lays them out."""

    def text(value: object) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")

    yield b'{\n "cycle_id": ' + text(cycle_id) + b',\n "invoices": ['
    separator = b"\n  "
    for entry in entries:
        body = json.dumps(entry, indent=1, sort_keys=True, ensure_ascii=False)
        yield separator + body.replace("\n", "\n  ").encode("utf-8")
        separator = b",\n  "
    end = b"]" if separator == b"\n  " else b"\n ]"
    yield end + b',\n "previous_sha256": ' + text(previous_sha256) + b"\n}\n"


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical bytes: the same manifest always hashes the same."""
    return (
        json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
    )


def finalize_manifest(
    engine: Engine, archive: Archive, cycle_id: str, retention_years: int
) -> StoredObject:
    """Archive the cycle manifest once and append it to the chain.

    Each manifest carries the sha256 of the manifest written before it (in the order written,
    so a backfilled cycle joins the end), forming a chain an auditor can walk back to the
    first cycle. A re-run of a complete cycle rebuilds the same bytes: a no-op (e-Factura XMLs
    archived after the manifest, as for a cycle closed before the XML was made, stay out of
    it, as they were).
    """
    with engine.begin() as conn:
        lock_manifest_chain(conn)
        known = conn.execute(sa.select(manifests).where(manifests.c.cycle_id == cycle_id)).first()
        last = conn.execute(
            sa.select(manifests.c.sha256, manifests.c.seq).order_by(manifests.c.seq.desc()).limit(1)
        ).first()
        previous = known.previous_sha256 if known else (last.sha256 if last else None)
        with tempfile.TemporaryFile() as spool:
            as_of = known.written_at if known else None
            count = write_manifest(conn, cycle_id, previous, spool, as_of)
            spool.seek(0)
            data = spool.read()  # about 330 bytes an invoice: the one copy held
        issue_date = conn.execute(
            sa.select(cycles.c.issue_date).where(cycles.c.cycle_id == cycle_id)
        ).scalar_one()
        stored = archive.put_once(
            manifest_key(cycle_id), data, retention_end(issue_date, retention_years)
        )
        del data
        if known is None:
            conn.execute(
                manifests.insert().values(
                    cycle_id=cycle_id, seq=(last.seq + 1) if last else 1, key=stored.key,
                    size=stored.size, sha256=stored.sha256, previous_sha256=previous,
                    version_id=stored.version_id, invoices=count,
                    written_at=datetime.now(UTC),
                )
            )  # fmt: skip
    return stored
