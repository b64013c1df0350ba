"""Send the notices of issued invoices from the outbox, and only from the outbox.

Each notice moves pending -> sending -> sent / failed-retryable / failed-permanent. A batch is
claimed in one commit and sent; each result is recorded as soon as the notifier has it (the
server's reply to that message), so a re-run, a retry or a crash never sends a recorded notice
again and never loses one: after a hard crash only the messages that were in flight on the open
connections are uncertain, and once their lease runs out they are sent again with the same
idempotency key (the e-mail Message-ID is derived from it, so receivers can drop a duplicate). Each claim carries a token, so two notify runs at once never send the same notice
and a run that lost its claim cannot overwrite another's result.
A notice that cannot be built (e.g. an SMS text that cannot fit one segment: a
`PermanentDeliveryError`) fails for good, recorded with its reason, without holding up the others;
any other error (a `ConfigurationError` such as a bad sender address) stops the run, as it would
fail every notice alike.
A notice already sent is never selected again.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.errors import PermanentDeliveryError
from billing.domain.model import IssuedInvoice, Supplier
from billing.domain.notices import CLAIMABLE, NoticeStatus
from billing.stages.progress import NO_PROGRESS, Progress
from notifiers.base import DeliveryResult, Notifier, Outgoing
from storage.archive import Archive
from storage.invoice_records import load_invoices
from storage.ledger import invoice_documents, invoices, notices

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
    # Notices claimed together (each result is recorded as it arrives): larger batches reuse
    # the SMTP connections longer; a crash leaves only the messages in flight uncertain.
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


def sms_channel(
    notifier: Notifier, supplier: Supplier, link: str | None = None, batch: int = 50
) -> Channel:
    """SMS of one GSM-7 segment; with `link` (the self-service page's address), it links there
    when the link fits."""
    from renderers.messages import render_sms

    def build(invoice: IssuedInvoice, recipient: str, pdf: bytes | None) -> Outgoing:
        text = render_sms(invoice, supplier.name, link)
        return Outgoing(f"{invoice.number}:sms", recipient, "", text)

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
    progress: Progress = NO_PROGRESS,
) -> NotifyResult:
    """Send the cycle's unsent notices on `channel` for these customers (or only `keys`)."""
    todo = _claimable(engine, cycle_id, customer_ids, channel.name, keys)
    progress.begin(len(todo))
    result = NotifyResult()
    for start in range(0, len(todo), channel.batch):
        batch = todo[start : start + channel.batch]
        with engine.connect() as conn:
            # a notice prints no line: the invoices without theirs
            numbers = [n.number for n in batch]
            by_number = {i.number: i for i in load_invoices(conn, numbers, with_lines=False)}
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
        recorder = _Recorder(engine, run_id, token)
        try:
            results = channel.notifier.send(
                [m for m in messages if m.key in claimed], on_result=recorder
            )
        finally:
            result += recorder.close()
        # what no callback reported (a notifier that answers only at the end), and the
        # notices that could not be built
        late = [r for r in results if r.key not in recorder.recorded]
        late += [r for r in unusable if r.key in claimed]
        result += _record(engine, late, run_id, token)
        progress.advance(len(batch))
    return result


IN_BATCH = 5000  # values in one IN list


def _claimable(
    engine: Engine,
    cycle_id: str,
    customer_ids: Sequence[str],
    channel: str,
    keys: Sequence[str] | None,
) -> list[sa.Row]:
    """The claimable notices on `channel` of these customers' invoices in the cycle (or only
    `keys`), with their PDFs, in key order. Read from the chunk's side: its invoices by the
    (cycle, customer) index, then their notices by key. Reading from the notices' side (every
    claimable notice of the cycle, then its invoice's customer) made each chunk scan what the
    whole cycle had left: at a million customers, 256 scans of up to 650,000 rows."""
    wanted_keys = set(keys) if keys is not None else None
    found: list[sa.Row] = []
    with engine.connect() as conn:
        numbers: list[str] = []
        for start in range(0, len(customer_ids), IN_BATCH):
            numbers += conn.execute(
                sa.select(invoices.c.number).where(
                    invoices.c.cycle_id == cycle_id,
                    invoices.c.customer_id.in_(customer_ids[start : start + IN_BATCH]),
                )
            ).scalars()
        for start in range(0, len(numbers), IN_BATCH):
            batch = [f"{number}:{channel}" for number in numbers[start : start + IN_BATCH]]
            if wanted_keys is not None:
                batch = [key for key in batch if key in wanted_keys]
            if not batch:
                continue
            found += conn.execute(
                sa.select(notices.c.key, notices.c.number, notices.c.recipient,
                          invoice_documents.c.key.label("pdf"), invoice_documents.c.version_id)
                .outerjoin(invoice_documents, invoice_documents.c.number == notices.c.number)
                .where(notices.c.key.in_(batch), notices.c.cycle_id == cycle_id,
                       notices.c.channel == channel, notices.c.status.in_(CLAIMABLE))
            ).all()  # fmt: skip
    return sorted(found, key=lambda row: row.key)


class _Recorder:
    """Records each result in the ledger the moment the notifier reports it, from a thread of
    its own (the sender's event loop never waits on the database); results that arrive while a
    commit runs go into the next. So a process killed mid-batch leaves unrecorded only the
    messages in flight on the open connections, not the whole claimed batch: those alone are
    sent again, with the same idempotency key."""

    def __init__(self, engine: Engine, run_id: str, token: str) -> None:
        self.engine, self.run_id, self.token = engine, run_id, token
        self.recorded: set[str] = set()
        self.totals = NotifyResult()
        self._queue: queue.SimpleQueue[DeliveryResult | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="notice-recorder", daemon=True)
        self._thread.start()

    def __call__(self, result: DeliveryResult) -> None:
        self._queue.put(result)

    def close(self) -> NotifyResult:
        """Wait until every reported result is committed; what they add up to."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.totals

    def _run(self) -> None:
        done = False
        while not done:
            pending = [self._queue.get()]
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in pending
            results = [r for r in pending if r is not None]
            if results and self._error is None:
                try:
                    self.totals += _record(self.engine, results, self.run_id, self.token)
                    self.recorded.update(r.key for r in results)
                except BaseException as exc:  # re-raised by close(), in the caller's thread
                    self._error = exc


def _claim(engine: Engine, keys: list[str], token: str, lease: timedelta) -> set[str]:
    """Take the notices that no other notify run holds; returns the keys this run now holds.

    A notice "sending" for longer than `lease` is taken over: its run died mid-send (it may
    have been delivered, and is sent again with the same key). One UPDATE decides, so two runs
    at once never both hold a notice."""
    now = datetime.now(UTC)
    free = notices.c.status.in_((NoticeStatus.PENDING, NoticeStatus.FAILED_RETRYABLE))
    abandoned = sa.and_(
        notices.c.status == NoticeStatus.SENDING, notices.c.updated_at < now - lease
    )
    with engine.begin() as conn:
        conn.execute(
            notices.update()
            .where(notices.c.key.in_(keys), sa.or_(free, abandoned))
            .values(
                status=NoticeStatus.SENDING, claim_token=token, attempts=notices.c.attempts + 1,
                updated_at=now,
            )
        )  # fmt: skip
        return set(
            conn.execute(
                sa.select(notices.c.key).where(
                    notices.c.key.in_(keys), notices.c.claim_token == token,
                    notices.c.status == NoticeStatus.SENDING,
                )
            ).scalars()
        )  # fmt: skip


def _record(engine: Engine, results: list[DeliveryResult], run_id: str, token: str) -> NotifyResult:
    """Record the results of the notices this run holds (a run that lost its claim records
    nothing, so it can never turn a sent notice back)."""
    now = datetime.now(UTC)
    if results:
        # one statement executed for every result (executemany), not one round trip each
        statement = (
            notices.update()
            .where(notices.c.key == sa.bindparam("b_key"), notices.c.claim_token == token)
            .values(
                status=sa.bindparam("b_status"), last_error=sa.bindparam("b_error"),
                provider_message_id=sa.bindparam("b_provider_id"), updated_at=now,
                sent_at=sa.bindparam("b_sent_at"), run_id=run_id,
            )
        )  # fmt: skip
        with engine.begin() as conn:
            conn.execute(
                statement,
                [
                    {
                        "b_key": r.key, "b_status": r.status, "b_error": r.error[:2000],
                        "b_provider_id": r.provider_message_id,
                        "b_sent_at": now if r.sent else None,
                    }
                    for r in results
                ],
            )  # fmt: skip
    return NotifyResult(
        sent=sum(r.status == NoticeStatus.SENT for r in results),
        failed=sum(r.status == NoticeStatus.FAILED_PERMANENT for r in results),
        pending=sum(r.status == NoticeStatus.FAILED_RETRYABLE for r in results),
    )
