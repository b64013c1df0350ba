"""Reading the billing system's export: cycle.json, and customers/charges as CSV or Parquet,
row by row with the file and line of each row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

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


def iter_rows(
    source: BlobStore, key: str, required: tuple[str, ...], known: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str] | None]]:
    """Rows of a CSV or Parquet table as (row number, {column: text}).

    The row number is what a person finds in the file: for CSV the line where the record starts
    (the header is line 1), for Parquet the 1-based row index. A CSV record with the wrong number
    of fields comes as (row, None).
    """
    file = source.describe(key)
    if key.endswith(".parquet"):
        yield from _iter_parquet(source, key, file, required, known)
        return
    try:
        # Undecodable bytes become lone surrogates, so a bad byte costs its row, not the file.
        with (
            source.open_read(key) as raw,
            io.TextIOWrapper(raw, "utf-8-sig", errors="surrogateescape", newline="") as text,
        ):
            reader = csv.reader(text, strict=True)
            header = _header(next(reader, None), file, required)
            columns = [(i, h) for i, h in enumerate(header) if h in known]
            width = len(header)
            start = reader.line_num + 1
            for values in reader:
                if len(values) != width:
                    if values:  # a blank line is no record
                        yield start, None
                else:
                    yield start, {h: values[i] for i, h in columns}
                start = reader.line_num + 1
    except FileNotFoundError:
        raise InputError(file, "missing") from None
    except csv.Error as exc:
        raise InputError(file, f"unreadable CSV at line {reader.line_num}: {exc}") from None


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
