"""Send the notices of issued invoices from the outbox, and only from the outbox.

Each notice moves pending -> sending -> sent / failed-retryable / failed-permanent. A small batch
(the size of the sending pool) is claimed in one commit, sent, and its results recorded in the
next, so a re-run, a retry or a crash never sends a recorded notice again and never loses one:
after a hard crash only the claimed batch is uncertain: once its lease runs out it is sent again
with the same idempotency key (the e-mail Message-ID is derived from it, so receivers can drop a
duplicate). Each claim carries a token, so two notify runs at once never send the same notice
and a run that lost its claim cannot overwrite another's result.
A notice that cannot be built (e.g. an SMS text that cannot fit one segment: a
`PermanentDeliveryError`) fails for good, recorded with its reason, without holding up the others;
any other error (a `ConfigurationError` such as a bad sender address) stops the run, as it would
fail every notice alike.
A notice already sent is never selected again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.errors import PermanentDeliveryError
from billing.domain.model import IssuedInvoice, Supplier
from billing.domain.notices import NoticeStatus
from notifiers.base import DeliveryResult, Notifier, Outgoing
from storage.archive import Archive
from storage.invoice_records import load_invoices
from storage.ledger import invoice_documents, invoices, notices

SENDABLE = ("pending", "sending", "failed-retryable")
DEFAULT_LEASE = timedelta(minutes=10)  # how long a notify run may hold a notice it is sending


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
    notifier: Notifier, supplier: Supplier, link_base: str | None = None, batch: int = 100
) -> Channel:
    """E-mail with the PDF attached; with `link_base` (the self-service page's address), a
    link to it instead of the attachment."""
    from renderers.messages import render_email

    def build(invoice: IssuedInvoice, recipient: str, pdf: bytes | None) -> Outgoing:
        link = f"{link_base.rstrip('/')}/?invoice={invoice.number}" if link_base else None
        subject, text, html = render_email(invoice, supplier, link)
        attachment = (f"{invoice.number}.pdf", pdf) if pdf is not None else None
        return Outgoing(f"{invoice.number}:email", recipient, subject, text, html, attachment)

    return Channel("email", notifier, build, batch, needs_pdf=not link_base)


def sms_channel(notifier: Notifier, supplier: Supplier, batch: int = 50) -> Channel:
    from renderers.messages import render_sms

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
    lease: timedelta = DEFAULT_LEASE,
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
            except PermanentDeliveryError as exc:  # this notice can never be sent
                failed = DeliveryResult(notice.key, NoticeStatus.FAILED_PERMANENT, error=str(exc))
                unusable.append(failed)
        token = uuid.uuid4().hex
        claimed = _claim(
            engine, [m.key for m in messages] + [r.key for r in unusable], token, lease
        )
        results = channel.notifier.send([m for m in messages if m.key in claimed])
        results += [r for r in unusable if r.key in claimed]
        result += _record(engine, results, run_id, token)
    return result


def _claim(engine: Engine, keys: list[str], token: str, lease: timedelta) -> set[str]:
    """Take the notices that no other notify run holds; returns the keys this run now holds.

    A notice "sending" for longer than `lease` is taken over: its run died mid-send (it may
    have been delivered, and is sent again with the same key). One UPDATE decides, so two runs
    at once never both hold a notice."""
    now = datetime.now(UTC)
    free = notices.c.status.in_(("pending", "failed-retryable"))
    abandoned = sa.and_(notices.c.status == "sending", notices.c.updated_at < now - lease)
    with engine.begin() as conn:
        conn.execute(
            notices.update()
            .where(notices.c.key.in_(keys), sa.or_(free, abandoned))
            .values(
                status="sending", claim_token=token, attempts=notices.c.attempts + 1,
                updated_at=now,
            )
        )  # fmt: skip
        return set(
            conn.execute(
                sa.select(notices.c.key).where(
                    notices.c.key.in_(keys), notices.c.claim_token == token,
                    notices.c.status == "sending",
                )
            ).scalars()
        )  # fmt: skip


def _record(engine: Engine, results: list[DeliveryResult], run_id: str, token: str) -> NotifyResult:
    """Record the results of the notices this run holds (a run that lost its claim records
    nothing, so it can never turn a sent notice back)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for r in results:
            conn.execute(
                notices.update()
                .where(notices.c.key == r.key, notices.c.claim_token == token)
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
