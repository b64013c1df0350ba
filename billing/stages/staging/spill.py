"""The spill files of staging's first passes (rows bucketed by a stable hash of the customer
id) and the quarantine report they feed."""

from __future__ import annotations

import csv
import io
import zlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from billing.domain.model import CUSTOMER_FIELDS as MODEL_CUSTOMER_FIELDS
from billing.domain.model import (
    Problem,
)
from billing.domain.spreadsheet import spreadsheet_row

QUARANTINE_COLUMNS = ("file", "row", "customer_id", "column", "reason", "detail", "action")


FLAGS = frozenset({"invalid_email", "invalid_phone", "unprintable_text"})


SPILL_FLUSH_ROWS = 100_000


SORT_REPORT_LIMIT = 500_000


# Characters of a customer id or detail kept in the report: a detail may quote the field, and a
# field may be up to csv's limit long (and six times that once undecodable bytes are escaped).
REPORT_TEXT_LIMIT = 300


_RAW = "surrogateescape"  # spill files carry undecodable input bytes through unchanged


CUSTOMER_FIELDS = (*MODEL_CUSTOMER_FIELDS, "row")


CHARGE_FIELDS = (
    "customer_id", "row", "description", "quantity", "unit_price", "vat_rate",
    "service_start", "service_end",
)  # fmt: skip


def bucket_of(customer_id: str, buckets: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    return zlib.crc32(customer_id.encode("utf-8", _RAW)) % buckets


class Spill:
    """Per-bucket CSV spill files on local disk, appended in batches to bound memory."""

    def __init__(self, folder: Path, name: str, buckets: int) -> None:
        self.paths = [folder / f"{name}-{b:05d}.csv" for b in range(buckets)]
        self.pending: dict[int, list[list[str]]] = defaultdict(list)
        self.buffered = 0

    def add(self, bucket: int, values: list[str]) -> None:
        self.pending[bucket].append(values)
        self.buffered += 1
        if self.buffered >= SPILL_FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        for bucket, rows in self.pending.items():
            with self.paths[bucket].open("a", encoding="utf-8", errors=_RAW, newline="") as out:
                csv.writer(out).writerows(rows)
        self.pending.clear()
        self.buffered = 0

    def read(self, bucket: int) -> Iterator[list[str]]:
        path = self.paths[bucket]
        if path.exists():
            with path.open(encoding="utf-8", errors=_RAW, newline="") as src:
                yield from csv.reader(src)


class Quarantine:
    """The quarantine report, spilled to disk as problems are found."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # bytes that were not UTF-8 are shown escaped (\udcff stands for the byte 0xff)
        self._out = path.open("w", encoding="utf-8", errors="backslashreplace", newline="")
        self._writer = csv.writer(self._out)
        self.rows: set[tuple[str, int]] = set()
        self.customers: set[str] = set()
        self.entries = 0

    def add(self, problem: Problem) -> None:
        flagged = problem.reason in FLAGS
        action = "flagged" if flagged else "quarantined"
        # the report is opened in spreadsheets: no cell may run as a formula
        self._writer.writerow(
            spreadsheet_row([problem.file, problem.row, _cut(problem.customer_id),
                             problem.column, problem.reason, _cut(problem.detail), action])
        )  # fmt: skip
        self.entries += 1
        if not flagged:
            self.rows.add((problem.file, problem.row))

    def quarantine_customer(self, customer_id: str) -> None:
        self.customers.add(customer_id)

    def finish(self) -> bytes:
        """The report as CSV bytes, sorted by file and row (when it is of a sortable size)."""
        self._out.close()
        with self.path.open(encoding="utf-8", newline="") as src:
            if self.entries <= SORT_REPORT_LIMIT:
                rows = sorted(csv.reader(src), key=lambda r: (r[0], int(r[1]), r[3]))
            else:
                rows = csv.reader(src)
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(QUARANTINE_COLUMNS)
            writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")


def _cut(text: str) -> str:
    return text if len(text) <= REPORT_TEXT_LIMIT else text[:REPORT_TEXT_LIMIT] + "…"
