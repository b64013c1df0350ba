"""The print step: put the cycle's pending paper notices into the print batch in the archive, one
part (at most `part_size` invoices: a PDF and its mailing CSV) at a time.

The cycle's pending paper notices are ordered by mailing postal code, then invoice number, in the
ledger; each part is the first `part_size` of those still pending. Once a part is archived, its
notices are marked sent with the part's name, so they leave the pending set and the next part is
the next `part_size`. The rows of `PARTS_PER_READ` parts are read at once: each read sorts every
notice still pending (at a million customers up to 200,000), and a read a part made that 200
sorts. Memory holds those rows (small: keys and numbers), one part's invoices and one invoice
PDF at a time, whatever the size of the cycle; a run that crashed after part k starts again at
the first part not marked, which has the same invoices, so the same name and bytes (a no-op in
the write-once archive).
"""

from __future__ import annotations

import functools
import gc
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.layout import print_part_key, retention_end
from billing.domain.model import Address
from billing.domain.notices import Channel, NoticeStatus
from notifiers.paper import PaperItem, build_print_batch
from storage.archive import Archive
from storage.invoice_records import load_invoices
from storage.ledger import invoice_documents, invoices, notices

PART_SIZE = 1000  # invoices per part: INVOICES_PRINT_BATCH_SIZE
PARTS_PER_READ = 20  # parts whose rows one query reads (20,000 small rows at the default size)


@dataclass(frozen=True)
class PrintResult:
    """`queued`: paper invoices put into the batch by this run; `parts`: the archive keys
    (without .pdf/.csv) of the parts it wrote, in print order; `batch`: the first of them."""

    queued: int
    batch: str | None
    parts: tuple[str, ...] = field(default=())


def print_pending(
    engine: Engine,
    archive: Archive,
    cycle_id: str,
    run_id: str,
    retention_years: int,
    part_size: int = PART_SIZE,
    builders: Executor | None = None,
    builder_count: int = 0,
) -> PrintResult:
    """Write every paper notice of the cycle that is not in the batch yet into parts of at most
    `part_size` invoices (`<part>.pdf` + `<part>.csv`), each kept `retention_years` like the
    invoices it holds, marking each part's notices sent with its name once it is archived.

    `builders`: `builder_count` processes that merge parts, a part each at a time, while this
    one reads the next part's PDFs and archives the parts in order; None: merge here."""
    parts: list[str] = []
    queued = 0
    ahead = builder_count if builders is not None else 0  # parts merging while this one reads
    while window := _next_pending(engine, cycle_id, part_size * PARTS_PER_READ):
        done = window[0].parts_done  # read with the rows: a part's place never moves
        merging: deque[tuple[int, Sequence[sa.Row], Future]] = deque()
        for first in range(0, len(window), part_size):
            pending = window[first : first + part_size]
            done += 1
            items = _paper_items(engine, archive, pending)
            merging.append((done, pending, _start_merge(builders, items)))
            last = first + part_size >= len(window)  # the next read must see every part marked
            while merging and (last or len(merging) > ahead):
                number, rows, merge = merging.popleft()
                name = print_part_key(cycle_id, number, [r.number for r in rows])
                pdf, mailing = merge.result()
                retain = retention_end(max(r.issue_date for r in rows), retention_years)
                archive.put_once(f"{name}.pdf", pdf, retain)
                archive.put_once(f"{name}.csv", mailing, retain)
                _mark_sent(engine, [r.key for r in rows], name, run_id)
                parts.append(name)
                queued += len(rows)
                del pdf, mailing, merge
    return PrintResult(queued, parts[0] if parts else None, tuple(parts))


def _start_merge(builders: Executor | None, items: list[PaperItem]) -> Future:
    """The part's (PDF, mailing CSV), merged by a builder process from the PDFs read here, or
    merged here (each PDF read when its turn comes)."""
    if builders is None:
        merged: Future = Future()
        merged.set_result(merge_part(items))
        return merged
    read = [(i.number, i.customer_id, i.name, i.mailing_address, i.read_pdf()) for i in items]
    return builders.submit(merge_read_part, read)


def merge_read_part(read: list[tuple[str, str, str, Address, bytes]]) -> tuple[bytes, bytes]:
    """`merge_part` of PDFs already read (what a builder process is handed)."""
    return merge_part(
        [PaperItem(*fields, read_pdf=functools.partial(bytes, pdf)) for *fields, pdf in read]
    )


def merge_part(items: list[PaperItem]) -> tuple[bytes, bytes]:
    """`build_print_batch`, then a collection: pypdf's readers are reference cycles that the
    generational collector may leave for long in a big process, and freed here a part's
    garbage never adds to the next part's peak (measured: 70-130 ms a collection, against
    about 2.5 s for a part of 1000)."""
    try:
        return build_print_batch(items)
    finally:
        gc.collect()


def _next_pending(engine: Engine, cycle_id: str, limit: int) -> Sequence[sa.Row]:
    """The first `limit` pending paper notices of the cycle in print order, each with the
    number of parts of the cycle already sent (in one statement: one consistent view)."""
    mailing_postal_code = sa.case(
        (invoices.c.paper_street != "", invoices.c.paper_postal_code), else_=invoices.c.postal_code
    )
    number = invoices.c.number
    if engine.dialect.name == "postgresql":  # byte order, as Python sorts (SQLite's default)
        mailing_postal_code, number = mailing_postal_code.collate("C"), number.collate("C")
    parts_done = (
        sa.select(sa.func.count(sa.distinct(notices.c.provider_message_id)))
        .where(notices.c.cycle_id == cycle_id, notices.c.channel == Channel.PAPER,
               notices.c.status == NoticeStatus.SENT)
        .scalar_subquery()
    )  # fmt: skip
    with engine.connect() as conn:
        return conn.execute(
            sa.select(notices.c.key, notices.c.number, invoices.c.issue_date,
                      invoice_documents.c.key.label("pdf"), invoice_documents.c.version_id,
                      parts_done.label("parts_done"))
            .join(invoices, invoices.c.number == notices.c.number)
            .join(invoice_documents, invoice_documents.c.number == notices.c.number)
            .where(notices.c.cycle_id == cycle_id, notices.c.channel == Channel.PAPER,
                   notices.c.status != NoticeStatus.SENT)
            .order_by(mailing_postal_code, number)
            .limit(limit)
        ).all()  # fmt: skip


def _paper_items(engine: Engine, archive: Archive, pending: Sequence[sa.Row]) -> list[PaperItem]:
    """The part's invoices as the print house needs them; each PDF is read when it is merged."""
    with engine.connect() as conn:
        issued = {
            i.number: i for i in load_invoices(conn, [p.number for p in pending], with_lines=False)
        }
    return [
        PaperItem(
            number=p.number,
            customer_id=issued[p.number].customer.customer_id,
            name=issued[p.number].customer.name,
            mailing_address=issued[p.number].customer.mailing_address,
            read_pdf=lambda p=p: archive.get(p.pdf, p.version_id),
        )
        for p in pending
    ]


def _mark_sent(engine: Engine, keys: list[str], name: str, run_id: str) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            notices.update()
            .where(notices.c.key.in_(keys))
            .values(status=NoticeStatus.SENT, attempts=notices.c.attempts + 1, provider_message_id=name,
                    updated_at=now, sent_at=now, run_id=run_id)
        )  # fmt: skip
