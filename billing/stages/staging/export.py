"""Reading the billing system's export: cycle.json, and customers/charges as CSV or Parquet,
row by row with the file and line of each row."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import charset_normalizer
import pyarrow as pa
import pyarrow.parquet as pq

from billing.domain.errors import InputError
from billing.domain.model import (
    Cycle,
)
from billing.domain.validation import (
    validate_cycle,
)
from storage.blobs import BlobStore


def read_cycle_json(source: BlobStore, cycle_id: str) -> Cycle:
    """Read and validate `<cycle_id>/cycle.json`; InputError names the file and every problem."""
    key = f"{cycle_id}/cycle.json"
    where = source.describe(key)
    try:
        raw = source.read_bytes(key)
    except FileNotFoundError:
        raise InputError(where, "missing: a cycle export needs cycle.json") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(where, f"not valid UTF-8 JSON ({exc})") from None
    cycle, errors = validate_cycle(data, cycle_id)
    if cycle is None:
        raise InputError(where, "; ".join(errors))
    return cycle


def find_table(source: BlobStore, cycle_id: str, name: str) -> str:
    """The key of `<name>.csv` or `<name>.parquet` (exactly one of them must exist)."""
    found = [
        f"{cycle_id}/{name}.{ext}"
        for ext in ("csv", "parquet")
        if source.exists(f"{cycle_id}/{name}.{ext}")
    ]
    if not found:
        raise InputError(
            source.describe(f"{cycle_id}/{name}.csv"), f"missing ({name}.csv or .parquet)"
        )
    if len(found) > 1:
        raise InputError(
            source.describe(f"{cycle_id}/{name}.*"), "both .csv and .parquet: ambiguous"
        )
    return found[0]


# A CSV record (one row, over one or more lines) longer than this is quarantined unread: a
# real row is a few hundred bytes, and the bound keeps memory flat whatever the file holds.
MAX_RECORD_BYTES = 4 << 20
# Python's csv refuses longer fields; the limit is process-wide, so it is read, never changed.
FIELD_LIMIT = csv.field_size_limit()
_READ_SIZE = 1 << 16  # bytes per readline() call, so no physical line is read whole
_BOM = b"\xef\xbb\xbf"
_STRUCTURE = re.compile(rb'[",]')

# A file is "not UTF-8" (and fails the stage) when nearly every row holding non-ASCII bytes fails
# to decode, and there are enough of them: a legacy code page breaks each row with a diacritic,
# a few damaged rows of a UTF-8 file cost only their rows.
NOT_UTF8_SHARE = 0.9
NOT_UTF8_MIN_ROWS = 3
NOT_UTF8_MIN_SHARE_OF_FILE = 0.01
_SAMPLE_BYTES = 1 << 16


@dataclass(frozen=True)
class RowError:
    """A CSV record that could not be read into fields: quarantined as it is."""

    column: str
    reason: str
    detail: str
    customer_id: str = ""


def iter_rows(
    source: BlobStore, key: str, required: tuple[str, ...], known: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str] | RowError]]:
    """Rows of a CSV or Parquet table as (row number, {column: text}).

    The row number is what a person finds in the file: for CSV the line where the record starts
    (the header is line 1), for Parquet the 1-based row index. A CSV record that cannot be read
    (the wrong number of fields, broken quoting, a field or record too long) comes as
    (row, RowError); reading goes on at the next record. InputError when the file is missing,
    has no usable header, or is not UTF-8 at all.
    """
    file = source.describe(key)
    if key.endswith(".parquet"):
        yield from _iter_parquet(source, key, file, required, known)
        return
    try:
        with source.open_read(key) as raw:
            yield from _iter_csv(raw, file, required, known)
    except FileNotFoundError:
        raise InputError(file, "missing") from None


class _Feed:
    """The one record csv.reader is to parse next (an iterator that can run dry and go on)."""

    def __init__(self) -> None:
        self.text: str | None = None

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        text, self.text = self.text, None
        if text is None:
            raise StopIteration
        return text


def _iter_csv(raw, file, required, known):
    feed = _Feed()
    reader = csv.reader(feed, strict=True)
    records = _records(raw)
    stats = _EncodingStats()
    header = None
    for first, _last, data, whole, closed in records:
        if not data.strip():
            continue
        if not whole or not closed:
            raise InputError(
                file, "unreadable CSV: the header row is too long or its quote never closes"
            )
        feed.text = data.removeprefix(_BOM).decode("utf-8", "surrogateescape")
        try:
            header = next(reader, None)
        except csv.Error as exc:
            if b"\r" in data and b"\n" not in data:
                raise InputError(
                    file,
                    "lines end in a bare carriage return (an old Mac export): export it again "
                    "with LF or CRLF line endings",
                ) from None
            raise InputError(file, f"unreadable CSV header at line {first}: {exc}") from None
        break
    header = _header(header, file, required)
    columns = [(i, h) for i, h in enumerate(header) if h in known]
    width = len(header)
    id_column = header.index("customer_id") if "customer_id" in header else None
    for first, last, data, whole, closed in records:
        span = f"line {first}" if first == last else f"lines {first}-{last}"
        if whole and not data.strip():
            continue  # a blank line is no record
        if not closed:
            yield (
                first,
                RowError(
                    "*",
                    "malformed_row",
                    f"a quote opened on line {first} never closes: "
                    f"{span}, to the end of the file, are one unreadable record",
                ),
            )
            continue
        if not whole:
            yield (
                first,
                _too_long(
                    data,
                    header,
                    id_column,
                    f"{span}: longer than {MAX_RECORD_BYTES >> 20} MB, read no further",
                ),
            )
            continue
        feed.text = stats.decode(data)
        try:
            values = next(reader, None)
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                yield (
                    first,
                    _too_long(
                        data, header, id_column, f"a field over {FIELD_LIMIT} characters ({span})"
                    ),
                )
            else:
                yield first, RowError("*", "malformed_row", f"unreadable CSV ({span}): {exc}")
            continue
        if values is None or len(values) != width:
            got = 0 if values is None else len(values)
            yield (
                first,
                RowError(
                    "*",
                    "malformed_row",
                    f"wrong number of fields: {got} instead of {width} ({span})",
                ),
            )
        else:
            yield first, {h: values[i] for i, h in columns}
    stats.check(file)


def _records(raw) -> Iterator[tuple[int, int, bytes, bool, bool]]:
    """The file's CSV records as (first line, last line, bytes, whole, closed), following the
    quoting the way csv does, so a quoted line break stays inside its record. A record over
    MAX_RECORD_BYTES keeps only its first MAX_RECORD_BYTES (whole=False); one whose quote never
    closes runs to the end of the file (closed=False). Memory: one record, at most the bound."""
    line = 0
    while True:
        first = line + 1
        parts: list[bytes] = []
        size = 0
        quoted = False
        at_line_start = True
        while True:
            chunk = raw.readline(_READ_SIZE)
            if not chunk:
                break
            if b'"' in chunk:
                quoted = _follow_quotes(chunk, quoted, record_start=at_line_start and not quoted)
            if size < MAX_RECORD_BYTES:
                parts.append(chunk[: MAX_RECORD_BYTES - size])
            size += len(chunk)
            at_line_start = chunk.endswith(b"\n")
            if at_line_start:
                line += 1
                if not quoted:
                    break
        if not size:
            return
        if not at_line_start:
            line += 1  # the last line has no line break
        yield first, max(first, line), b"".join(parts), size <= MAX_RECORD_BYTES, not quoted


def _follow_quotes(chunk: bytes, quoted: bool, record_start: bool) -> bool:
    """Whether a record is inside a quoted field after `chunk`, by csv's rules: a quote opens a
    field only at the field's start; inside, `""` is a quote and a lone one closes the field."""
    return _scan(chunk, quoted, 0 if record_start else -1)[0]


def _field_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each field of one record, by the same rules."""
    _, separators = _scan(data, False, 0)
    starts = [0, *(at + 1 for at in separators)]
    ends = [*separators, len(data)]
    return list(zip(starts, ends, strict=True))


def _scan(chunk: bytes, quoted: bool, field_start: int) -> tuple[bool, list[int]]:
    """Walk `chunk` by csv's quoting rules from state `quoted` (`field_start`: where the current
    field began, -1 when before the chunk): whether it ends inside quotes, and the offsets of
    the commas that separate fields."""
    separators: list[int] = []
    skip = -1
    for match in _STRUCTURE.finditer(chunk):
        at = match.start()
        if at == skip:
            continue
        if chunk[at] == 0x2C:  # ","
            if not quoted:
                separators.append(at)
                field_start = at + 1
        elif quoted:
            if chunk[at + 1 : at + 2] == b'"':
                skip = at + 1
            else:
                quoted = False
        elif at == field_start:
            quoted = True
    return quoted, separators


def _too_long(data: bytes, header: list[str], id_column: int | None, detail: str) -> RowError:
    """too_long, naming the first field over the csv limit (or the one the cut fell in)."""
    spans = _field_spans(data)
    index = next((i for i, (a, b) in enumerate(spans) if b - a > FIELD_LIMIT), len(spans) - 1)
    column = header[index] if index < len(header) else "*"
    customer_id = ""
    if id_column is not None and id_column < min(index, len(spans)):
        a, b = spans[id_column]
        if b - a <= 64:
            customer_id = data[a:b].decode("utf-8", "replace").strip().strip('"')
    return RowError(column, "too_long", detail, customer_id)


class _EncodingStats:
    """Counts the records that hold non-ASCII bytes and those that are not UTF-8."""

    def __init__(self) -> None:
        self.rows = self.non_ascii = self.undecodable = 0
        self.sample = bytearray()

    def decode(self, data: bytes) -> str:
        self.rows += 1
        if data.isascii():
            return data.decode("ascii")
        self.non_ascii += 1
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            # undecodable bytes become lone surrogates, so a bad byte costs its row, not the file
            self.undecodable += 1
            if len(self.sample) < _SAMPLE_BYTES:
                self.sample += data[: _SAMPLE_BYTES - len(self.sample)]
            return data.decode("utf-8", "surrogateescape")

    def check(self, file: str) -> None:
        bad = self.undecodable
        if (
            bad >= NOT_UTF8_MIN_ROWS
            and bad >= NOT_UTF8_SHARE * self.non_ascii
            and bad >= NOT_UTF8_MIN_SHARE_OF_FILE * self.rows
        ):
            raise InputError(
                file,
                f"not UTF-8 (looks like {guess_encoding(bytes(self.sample))}): {bad} of the "
                f"{self.non_ascii} rows with letters beyond ASCII do not decode; export it "
                "again as UTF-8",
            )


_CENTRAL_EUROPEAN = {"cp1250", "iso8859_2", "iso8859_16", "mac_latin2", "cp852"}
_ROMANIAN_LETTERS = re.compile("[ăâîșşțţĂÂÎȘŞȚŢ]")


def guess_encoding(sample: bytes) -> str:
    """A person's name for the encoding of bytes that are not UTF-8. Of charset-normalizer's
    candidates, the one that reads the most Romanian letters wins (on short Romanian rows its
    own first choice is often Windows-1252)."""
    candidates = [m.encoding for m in charset_normalizer.from_bytes(sample)]
    if not candidates:
        return "an unknown encoding"
    best = max(
        candidates,
        key=lambda e: len(_ROMANIAN_LETTERS.findall(sample.decode(e, "replace"))),
    )  # max keeps the first of equals, so charset-normalizer's order breaks ties
    if best in _CENTRAL_EUROPEAN:
        # Romanian letters have the same bytes in these; Windows-1250 is what exports use
        return "Windows-1250 or ISO-8859-2/16"
    return best.replace("_", "-").upper().replace("CP", "Windows-", 1)


def _header(header: list[str] | None, file: str, required: tuple[str, ...]) -> list[str]:
    if header is None:
        raise InputError(file, "empty: no header row")
    header = [h.strip().lower() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(file, f"missing column(s): {', '.join(missing)}")
    return header


def _iter_parquet(source, key, file, required, known):
    try:
        with source.local_copy(key) as path:
            parquet = pq.ParquetFile(path)
            header = _header(parquet.schema_arrow.names, file, required)
            names = [
                n for n, h in zip(parquet.schema_arrow.names, header, strict=True) if h in known
            ]
            row = 0
            for batch in parquet.iter_batches(batch_size=65_536, columns=names):
                columns = [
                    [("" if v is None else str(v)) for v in batch.column(i).to_pylist()]
                    for i in range(batch.num_columns)
                ]
                lowered = [n.strip().lower() for n in names]
                for values in zip(*columns, strict=True):
                    row += 1
                    yield row, dict(zip(lowered, values, strict=True))
    except FileNotFoundError:
        raise InputError(file, "missing") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(file, f"unreadable Parquet: {exc}") from None


def count_rows(source: BlobStore, key: str) -> int:
    if key.endswith(".parquet"):
        with source.local_copy(key) as path:
            return pq.ParquetFile(path).metadata.num_rows
    return sum(1 for _ in iter_rows(source, key, (), ()))
