"""Render each issued invoice to PDF once, archive it, and record it in the ledger; then the
cycle manifest.

Idempotent and crash-safe: a chunk re-run renders only invoices without a document row; an
invoice rendered and stored before a crash, but not yet recorded, renders to the same bytes
again (rendering is deterministic), so the archive's write-once check passes and the row is
written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from billing.errors import ArchiveError, InvoicePipelineError
from billing.model import IssuedInvoice, Supplier
from storage.archive import Archive, StoredObject
from storage.invoices import load_invoices, numbers_without_document
from storage.ledger import invoice_documents, invoices

Renderer = Callable[[IssuedInvoice, Supplier], bytes]
BATCH = 100


def invoice_key(customer_id: str, number: str) -> str:
    return f"invoices/{customer_id}/{number}.pdf"


def manifest_key(cycle_id: str) -> str:
    return f"manifests/{cycle_id}.json"


@dataclass(frozen=True)
class ArchiveResult:
    archived: int = 0

    def __add__(self, other: ArchiveResult) -> ArchiveResult:
        return ArchiveResult(self.archived + other.archived)


def archive_invoices(
    engine: Engine,
    archive: Archive,
    cycle_id: str,
    customer_ids: Sequence[str],
    run_id: str,
    supplier: Supplier,
    render: Renderer,
    template_version: str,
) -> ArchiveResult:
    """Render and archive the invoices of `customer_ids` in the cycle that have no document yet."""
    with engine.connect() as conn:
        pending = numbers_without_document(conn, cycle_id, customer_ids)
    result = ArchiveResult()
    failures: list[str] = []
    for start in range(0, len(pending), BATCH):
        with engine.connect() as conn:
            batch = load_invoices(conn, pending[start : start + BATCH])
        rows = []
        for invoice in batch:
            key = invoice_key(invoice.customer.customer_id, invoice.number)
            try:
                stored = archive.put_once(key, render(invoice, supplier))
            except InvoicePipelineError as exc:  # one bad invoice must not hold up the others
                failures.append(f"{invoice.number}: {exc}")
                continue
            rows.append(_document_row(invoice, stored, cycle_id, template_version, run_id))
        result += ArchiveResult(_record(engine, rows))
    if failures:
        shown = "; ".join(failures[:5]) + ("; ..." if len(failures) > 5 else "")
        raise ArchiveError(
            f"{len(failures)} invoice(s) of cycle {cycle_id} were not archived "
            f"({result.archived} were): {shown}"
        )
    return result


def _document_row(invoice, stored: StoredObject, cycle_id, template_version, run_id) -> dict:
    return {
        "number": invoice.number,
        "cycle_id": cycle_id,
        "template_version": template_version,
        "key": stored.key,
        "size": stored.size,
        "sha256": stored.sha256,
        "version_id": stored.version_id,
        "archived_at": datetime.now(UTC),
        "run_id": run_id,
    }


def _record(engine: Engine, rows: list[dict]) -> int:
    """Insert document rows; a row another worker recorded first is left as it is."""
    if not rows:
        return 0
    with engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        done = conn.execute(
            insert(invoice_documents).on_conflict_do_nothing(index_elements=["number"]), rows
        )
        return max(done.rowcount, 0)


def build_manifest(engine: Engine, cycle_id: str, previous_sha256: str | None) -> dict:
    """The cycle manifest (contract 4): every invoice of the cycle with its archived document."""
    query = (
        sa.select(
            invoices.c.number, invoices.c.customer_id, invoices.c.issue_date, invoices.c.total,
            invoice_documents.c.key, invoice_documents.c.size, invoice_documents.c.sha256,
            invoice_documents.c.version_id, invoice_documents.c.template_version,
        )
        .select_from(invoices.outerjoin(invoice_documents))
        .where(invoices.c.cycle_id == cycle_id)
        .order_by(invoices.c.number)
    )  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    missing = [r.number for r in rows if r.key is None]
    if missing:
        raise ArchiveError(
            f"cycle {cycle_id}: {len(missing)} invoice(s) have no archived PDF yet "
            f"(first: {missing[0]}); run the render step again before the manifest"
        )
    return {
        "cycle_id": cycle_id,
        "previous_sha256": previous_sha256,
        "invoices": [
            {
                "number": r.number, "customer_id": r.customer_id,
                "issue_date": r.issue_date.isoformat(), "total": f"{r.total:.2f}", "key": r.key,
                "size": r.size, "sha256": r.sha256, "version_id": r.version_id,
                "template_version": r.template_version,
            }
            for r in rows
        ],
    }  # fmt: skip


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical bytes: the same manifest always hashes the same."""
    return (
        json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
    )


def write_manifest(archive: Archive, manifest: dict) -> StoredObject:
    """Archive the manifest once; a re-run of a complete cycle writes the same bytes (no-op)."""
    return archive.put_once(manifest_key(manifest["cycle_id"]), manifest_bytes(manifest))
