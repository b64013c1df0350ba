"""Send the notices of issued invoices from the outbox, and only from the outbox.

Each notice moves pending -> sending -> sent / failed-retryable / failed-permanent. A small batch
(the size of the sending pool) is claimed in one commit, sent, and its results recorded in the
next, so a re-run, a retry or a crash never sends a recorded notice again and never loses one:
after a hard crash only the claimed batch is uncertain; it is sent again with the same
idempotency key (the e-mail Message-ID is derived from it, so receivers can drop a duplicate).
A notice that cannot be built (e.g. an SMS text that cannot fit one segment) fails for good,
recorded with its reason, without holding up the others.
A notice already sent is never selected again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.errors import InvoicePipelineError
from billing.model import IssuedInvoice, Supplier
from notifiers.delivery import DeliveryResult, Notifier, Outgoing
from storage.archive import Archive
from storage.invoices import load_invoices
from storage.ledger import invoice_documents, invoices, notices

SENDABLE = ("pending", "sending", "failed-retryable")


@dataclass(frozen=True)
class NotifyResult:
    sent: int = 0
    failed: int = 0
    pending: int = 0

    def __add__(self, other: NotifyResult) -> NotifyResult:
        return NotifyResult(
            self.sent + other.sent, self.failed + other.failed, self.pending + other.pending
        )


@dataclass(frozen=True)
class Channel:
    """A channel as the notify step uses it: how to build a message and who sends it."""

    name: str
    notifier: Notifier
    build: Callable[[IssuedInvoice, str, bytes | None], Outgoing]  # invoice, recipient, PDF
    # Notices claimed and recorded together: larger batches reuse the SMTP connections longer;
    # after a hard crash at most one batch is uncertain and is sent again with the same keys.
    batch: int = 100
    needs_pdf: bool = False


def email_channel(
    notifier: Notifier, supplier: Supplier, attach_pdf: bool = True, batch: int = 8
) -> Channel:
    from renderers.messages import render_email

    def build(invoice: IssuedInvoice, recipient: str, pdf: bytes | None) -> Outgoing:
        subject, text, html = render_email(invoice, supplier)
        attachment = (f"{invoice.number}.pdf", pdf) if pdf is not None else None
        return Outgoing(f"{invoice.number}:email", recipient, subject, text, html, attachment)

    return Channel("email", notifier, build, batch, needs_pdf=attach_pdf)


def sms_channel(notifier: Notifier, supplier: Supplier, batch: int = 50) -> Channel:
    from notifiers.sms import render_sms

    def build(invoice: IssuedInvoice, recipient: str, pdf: bytes | None) -> Outgoing:
        return Outgoing(f"{invoice.number}:sms", recipient, "", render_sms(invoice, supplier.name))

    return Channel("sms", notifier, build, batch)


def notify_invoices(
    engine: Engine,
    archive: Archive,
    cycle_id: str,
    customer_ids: Sequence[str],
    channel: Channel,
    run_id: str,
    keys: Sequence[str] | None = None,
) -> NotifyResult:
    """Send the cycle's unsent notices on `channel` for these customers (or only `keys`)."""
    query = (
        sa.select(notices.c.key, notices.c.number, notices.c.recipient, invoice_documents.c.key.label("pdf"),
                  invoice_documents.c.version_id)
        .join(invoices, invoices.c.number == notices.c.number)
        .outerjoin(invoice_documents, invoice_documents.c.number == notices.c.number)
        .where(
            notices.c.cycle_id == cycle_id,
            notices.c.channel == channel.name,
            notices.c.status.in_(SENDABLE),
            invoices.c.customer_id.in_(customer_ids),
        )
        .order_by(notices.c.key)
    )  # fmt: skip
    if keys is not None:
        query = query.where(notices.c.key.in_(keys))
    with engine.connect() as conn:
        todo = conn.execute(query).all()
    result = NotifyResult()
    for start in range(0, len(todo), channel.batch):
        batch = todo[start : start + channel.batch]
        with engine.connect() as conn:
            by_number = {i.number: i for i in load_invoices(conn, [n.number for n in batch])}
        messages, unusable = [], []
        for notice in batch:
            needed = channel.needs_pdf and notice.pdf
            pdf = archive.get(notice.pdf, notice.version_id) if needed else None
            try:
                messages.append(channel.build(by_number[notice.number], notice.recipient, pdf))
            except (ValueError, InvoicePipelineError) as exc:  # this notice can never be sent
                unusable.append(DeliveryResult(notice.key, "failed-permanent", error=str(exc)))
        _claim(engine, [m.key for m in messages] + [r.key for r in unusable])
        result += _record(engine, channel.notifier.send(messages) + unusable, run_id)
    return result


def _claim(engine: Engine, keys: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            notices.update()
            .where(notices.c.key.in_(keys), notices.c.status.in_(SENDABLE))
            .values(status="sending", attempts=notices.c.attempts + 1, updated_at=datetime.now(UTC))
        )


def _record(engine: Engine, results: list[DeliveryResult], run_id: str) -> NotifyResult:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for r in results:
            conn.execute(
                notices.update()
                .where(notices.c.key == r.key)
                .values(
                    status=r.status, last_error=r.error[:2000], provider_message_id=r.provider_message_id,
                    updated_at=now, sent_at=now if r.sent else None, run_id=run_id,
                )
            )  # fmt: skip
    return NotifyResult(
        sent=sum(r.status == "sent" for r in results),
        failed=sum(r.status == "failed-permanent" for r in results),
        pending=sum(r.status == "failed-retryable" for r in results),
    )
