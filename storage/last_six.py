"""The retention view's query: a customer's newest archived invoices, read from the ledger."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.ledger import invoice_documents, invoices

VIEW_SIZE = 6


def newest_archived_invoices(
    engine: Engine, customer_id: str, limit: int = VIEW_SIZE
) -> list[dict]:
    """The customer's newest archived invoices by issue date (ties by number), newest first:
    number, cycle_id, issue_date, due_date, total, currency, period_start, period_end, and the
    archived document's sha256, key and version_id.

    Ordering by issue date means a backfilled older cycle never pushes newer invoices out."""
    query = (
        sa.select(
            invoices.c.number, invoices.c.cycle_id, invoices.c.issue_date, invoices.c.due_date,
            invoices.c.total, invoices.c.currency, invoices.c.period_start,
            invoices.c.period_end, invoice_documents.c.sha256,
            invoice_documents.c.key, invoice_documents.c.version_id,
        )
        .join(invoice_documents, invoice_documents.c.number == invoices.c.number)
        .where(invoices.c.customer_id == customer_id)
        .order_by(invoices.c.issue_date.desc(), invoices.c.number.desc())
        .limit(limit)
    )  # fmt: skip
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def owned_document(engine: Engine, number: str, customer_ids: Sequence[str]) -> dict | None:
    """The archived document (key, version_id, sha256, size) of invoice `number` when it is one
    of `customer_ids`' invoices; None otherwise, so another customer's number reads as absent."""
    if not customer_ids:
        return None
    query = (
        sa.select(
            invoice_documents.c.key, invoice_documents.c.version_id, invoice_documents.c.sha256,
            invoice_documents.c.size,
        )
        .join(invoices, invoices.c.number == invoice_documents.c.number)
        .where(invoices.c.number == number, invoices.c.customer_id.in_(customer_ids))
    )  # fmt: skip
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return dict(row._mapping) if row else None
