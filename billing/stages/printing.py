"""The print step: put the cycle's pending paper notices into a print batch in the archive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.layout import print_batch_key, retention_end
from billing.domain.notices import Channel, NoticeStatus
from notifiers.paper import PaperItem, build_print_batch
from storage.archive import Archive
from storage.invoice_records import load_invoices
from storage.ledger import invoice_documents, notices


@dataclass(frozen=True)
class PrintResult:
    queued: int
    batch: str | None  # the archive key prefix of the batch written, if any


def print_pending(
    engine: Engine, archive: Archive, cycle_id: str, run_id: str, retention_years: int
) -> PrintResult:
    """Write one batch (`<batch>.pdf` + `<batch>.csv`) of every paper notice of the cycle that
    is not in a batch yet, kept `retention_years` like the invoices it holds, then mark those
    notices sent with the batch's name."""
    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(notices.c.key, notices.c.number, invoice_documents.c.key.label("pdf"),
                      invoice_documents.c.version_id)
            .join(invoice_documents, invoice_documents.c.number == notices.c.number)
            .where(notices.c.cycle_id == cycle_id, notices.c.channel == Channel.PAPER,
                   notices.c.status != NoticeStatus.SENT)
            .order_by(notices.c.number)
        ).all()  # fmt: skip
        invoices = {i.number: i for i in load_invoices(conn, [p.number for p in pending])}
    if not pending:
        return PrintResult(0, None)
    items = [
        PaperItem(
            number=p.number,
            customer_id=invoices[p.number].customer.customer_id,
            name=invoices[p.number].customer.name,
            mailing_address=invoices[p.number].customer.mailing_address,
            read_pdf=lambda p=p: archive.get(p.pdf, p.version_id),
        )
        for p in pending
    ]
    pdf, mailing = build_print_batch(items)
    name = print_batch_key(cycle_id, [p.number for p in pending])
    retain = retention_end(next(iter(invoices.values())).issue_date, retention_years)
    archive.put_once(f"{name}.pdf", pdf, retain)
    archive.put_once(f"{name}.csv", mailing, retain)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            notices.update()
            .where(notices.c.key.in_([p.key for p in pending]))
            .values(status=NoticeStatus.SENT, attempts=notices.c.attempts + 1, provider_message_id=name,
                    updated_at=now, sent_at=now, run_id=run_id)
        )  # fmt: skip
    return PrintResult(len(pending), name)
