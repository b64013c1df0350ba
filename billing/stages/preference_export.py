"""The preference changes customers made (page, 411 line, *100# menu, SMS), as the CSV the
billing system imports (`invoices preferences export`): one row per change, oldest first, each
holding the whole preference after the change and how far cycles have met it.

Written like the print batch's mailing CSV (notifiers.paper): UTF-8 without a byte-order mark,
lines ending in `\\n`, every cell spreadsheet-safe (billing ops open it in a spreadsheet, and a
street is whatever the customer typed). A row carries no phone number and no e-mail address.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from billing.domain.moments import as_utc
from billing.domain.spreadsheet import spreadsheet_row
from storage.preferences import changes_since

EXPORT_COLUMNS = (
    "changed_at", "customer_id", "source", "delivery", "notify", "paper_street", "paper_city",
    "paper_county", "paper_postal_code", "state",
)  # fmt: skip


def export_changes(engine: Engine, since: datetime | None = None) -> Iterator[str]:
    """The CSV text of every change made at or after `since` (aware; None: all), a header line
    first, then one line per change; streamed, so a long history never sits in memory."""
    buffer = io.StringIO()
    table = csv.writer(buffer, lineterminator="\n")

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        table.writerow(values)
        return buffer.getvalue()

    yield line(EXPORT_COLUMNS)
    # the ledger compares times as written, in UTC (SQLite keeps no zone)
    start = since.astimezone(UTC) if since is not None else None
    for change in changes_since(engine, start):
        row = {**change, "changed_at": utc_text(change["changed_at"])}
        yield line(spreadsheet_row(row[column] for column in EXPORT_COLUMNS))


def utc_text(moment: datetime) -> str:
    """`moment` as ISO 8601 in UTC, to the second (`2026-11-05T08:30:00Z`); a time without a
    zone, as SQLite hands them back, was written in UTC."""
    return as_utc(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
