"""Stage a cycle export: read, validate, quarantine, and partition into chunks.

Streaming in two passes with bounded memory, whatever the cycle's size:

1. customers.* row by row: each row is validated and appended to the spill file of its
   bucket, chosen by a stable hash of customer_id (so a customer's charges, hashed the same way,
   land beside it without any global lookup table);
2. charges.* row by row, likewise;
3. bucket by bucket (at most one chunk in memory): duplicates, unknown customers, customers
   with an invalid charge or no charge are quarantined; the rest is written as the chunk.

A chunk is two Parquet files under `<staging>/<cycle_id>/chunk-NNNNN/`; tasks pass a small
`ChunkRef` and read only their chunk. `staged.json` lists the chunks and the counts, and
`quarantine.csv` lists every quarantined or flagged row with file, row, column and reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from billing.domain.errors import InputError
from billing.domain.model import CUSTOMER_FIELDS as MODEL_CUSTOMER_FIELDS
from billing.domain.model import (
    Charge,
    ChunkRef,
    Customer,
    Cycle,
    Problem,
    customer_from_row,
    customer_to_row,
)
from billing.domain.validation import (
    CHARGE_COLUMNS,
    CUSTOMER_COLUMNS,
    REQUIRED_CHARGE_COLUMNS,
    REQUIRED_CUSTOMER_COLUMNS,
    ChargeValidator,
    CustomerValidator,
    validate_cycle,
)
from renderers.fonts import undrawable
from storage.blobs import BlobStore

MAX_CHUNKS = 1024  # Airflow's max_map_length: one mapped task per chunk
QUARANTINE_COLUMNS = ("file", "row", "customer_id", "column", "reason", "detail", "action")
FLAGS = frozenset({"invalid_email", "invalid_phone"})
SPILL_FLUSH_ROWS = 100_000
SORT_REPORT_LIMIT = 500_000
_RAW = "surrogateescape"  # spill files carry undecodable input bytes through unchanged

CUSTOMER_FIELDS = (*MODEL_CUSTOMER_FIELDS, "row")
CHARGE_FIELDS = (
    "customer_id", "row", "description", "quantity", "unit_price", "vat_rate",
    "service_start", "service_end",
)  # fmt: skip


@dataclass(frozen=True)
class StagedCycle:
    """What staging produced: the cycle, its chunks and the counts for the run report."""

    cycle: Cycle
    chunks: tuple[ChunkRef, ...]
    customers: int
    quarantined_customers: int
    quarantined_rows: int
    flagged_customers: int
    charges: int

    def as_dict(self) -> dict:
        return {
            "cycle": cycle_to_dict(self.cycle),
            "chunks": [c.as_dict() for c in self.chunks],
            "customers": self.customers,
            "quarantined_customers": self.quarantined_customers,
            "quarantined_rows": self.quarantined_rows,
            "flagged_customers": self.flagged_customers,
            "charges": self.charges,
        }

    @classmethod
    def from_dict(cls, data: dict) -> StagedCycle:
        return cls(
            cycle=cycle_from_dict(data["cycle"]),
            chunks=tuple(ChunkRef.from_dict(c) for c in data["chunks"]),
            **{k: data[k] for k in ("customers", "quarantined_customers", "quarantined_rows")},
            flagged_customers=data["flagged_customers"],
            charges=data["charges"],
        )


def cycle_to_dict(cycle: Cycle) -> dict:
    return {
        "cycle_id": cycle.cycle_id,
        "series": cycle.series,
        "period_start": cycle.period_start.isoformat(),
        "period_end": cycle.period_end.isoformat(),
        "issue_date": cycle.issue_date.isoformat(),
        "due_date": cycle.due_date.isoformat(),
        "currency": cycle.currency,
    }


def cycle_from_dict(data: dict) -> Cycle:
    cycle, errors = validate_cycle(data, data.get("cycle_id", ""))
    if cycle is None:
        raise ValueError("; ".join(errors))
    return cycle


def bucket_of(customer_id: str, buckets: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    return zlib.crc32(customer_id.encode("utf-8", _RAW)) % buckets


# ---------------------------------------------------------------------------- reading the export


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


# ---------------------------------------------------------------------------- spilling to buckets


class _Spill:
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


class _Quarantine:
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
        self._writer.writerow(
            [problem.file, problem.row, problem.customer_id, problem.column, problem.reason,
             problem.detail, action]
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


# ---------------------------------------------------------------------------- staging


def stage_cycle(
    source: BlobStore,
    staging: BlobStore,
    cycle_id: str,
    chunk_size: int = 1000,
    work_dir: Path | None = None,
) -> StagedCycle:
    """Validate the export `<source>/<cycle_id>/` and write its chunks to `<staging>/<cycle_id>/`.

    Raises InputError (naming the file) when a file is missing or unusable; row-level problems
    go to the quarantine report and never stop the cycle.
    """
    cycle = read_cycle_json(source, cycle_id)
    customers_key = find_table(source, cycle_id, "customers")
    charges_key = find_table(source, cycle_id, "charges")
    customers_file = customers_key.rsplit("/", 1)[1]
    charges_file = charges_key.rsplit("/", 1)[1]
    total_rows = count_rows(source, customers_key)
    buckets = max(1, min(MAX_CHUNKS, math.ceil(total_rows / chunk_size)))

    with tempfile.TemporaryDirectory(prefix=f"stage-{cycle_id}-", dir=work_dir) as tmp:
        folder = Path(tmp)
        quarantine = _Quarantine(folder / "quarantine.csv")
        customer_spill = _Spill(folder, "customers", buckets)
        charge_spill = _Spill(folder, "charges", buckets)

        # customer rows without a usable id are quarantined, and counted as customers
        _, anonymous = _spill_table(
            iter_rows(source, customers_key, REQUIRED_CUSTOMER_COLUMNS, CUSTOMER_COLUMNS),
            CustomerValidator(customers_file, undrawable).validate,
            customers_file, customer_spill, quarantine, _customer_values,
        )  # fmt: skip
        charge_count, _ = _spill_table(
            iter_rows(source, charges_key, REQUIRED_CHARGE_COLUMNS, CHARGE_COLUMNS),
            ChargeValidator(charges_file, cycle, undrawable).validate,
            charges_file, charge_spill, quarantine, _charge_values,
        )  # fmt: skip

        staging.delete_prefix(cycle_id)
        chunks = []
        distinct_ids = flagged = 0
        for bucket in range(buckets):
            customers, charges, ids = _finish_bucket(
                customer_spill, charge_spill, bucket, customers_file, charges_file, quarantine
            )
            distinct_ids += ids
            flagged += sum(1 for c in customers if c[CUSTOMER_FIELDS.index("contact_flags")])
            if customers:
                number = len(chunks) + 1
                chunks.append(_write_chunk(staging, cycle_id, number, customers, charges))
        chunks = [ChunkRef(**{**c.as_dict(), "total": len(chunks)}) for c in chunks]
        report = quarantine.finish()

    staged = StagedCycle(
        cycle=cycle,
        chunks=tuple(chunks),
        customers=distinct_ids + anonymous,
        quarantined_customers=len(quarantine.customers) + anonymous,
        quarantined_rows=len(quarantine.rows),
        flagged_customers=flagged,
        charges=charge_count,
    )
    staging.write_bytes(f"{cycle_id}/quarantine.csv", report)
    staging.write_bytes(f"{cycle_id}/staged.json", json.dumps(staged.as_dict(), indent=2).encode())
    return staged


def _spill_table(rows, validate, file, spill: _Spill, quarantine: _Quarantine, values_of):
    """One streaming pass over a table: validate each row, report its problems, and spill it
    (or, when invalid, just its id) to its customer's bucket. Returns (rows read, rows without
    a usable customer id)."""
    count = anonymous = 0
    for row, raw in rows:
        count += 1
        if raw is None:
            quarantine.add(Problem(file, row, "", "*", "malformed_row", "wrong number of fields"))
            anonymous += 1
            continue
        value, problems = validate(row, raw)
        for problem in problems:
            quarantine.add(problem)
        cid = value.customer_id if value else problems[0].customer_id
        if not cid:
            anonymous += 1
            continue
        record = ["V", *values_of(value, row)] if value else ["Q", str(row), cid]
        spill.add(bucket_of(cid, len(spill.paths)), record)
    spill.flush()
    return count, anonymous


def load_staged(staging: BlobStore, cycle_id: str) -> StagedCycle:
    """The result of an earlier `stage_cycle`."""
    try:
        return StagedCycle.from_dict(json.loads(staging.read_bytes(f"{cycle_id}/staged.json")))
    except FileNotFoundError:
        raise InputError(
            staging.describe(f"{cycle_id}/staged.json"), "cycle not staged yet"
        ) from None


def _customer_values(customer: Customer, row: int) -> list[str]:
    return [*customer_to_row(customer).values(), str(row)]


def _charge_values(charge: Charge, row: int) -> list[str]:
    return [
        charge.customer_id, str(charge.row), charge.description, str(charge.quantity),
        str(charge.unit_price), str(charge.vat_rate),
        charge.service_start.isoformat() if charge.service_start else "",
        charge.service_end.isoformat() if charge.service_end else "",
    ]  # fmt: skip


def _finish_bucket(customer_spill, charge_spill, bucket, customers_file, charges_file, quarantine):
    """Resolve what needs the whole bucket: duplicates, orphans, customers without valid charges."""
    valid: dict[str, list[str]] = {}
    rows_of: dict[str, list[int]] = defaultdict(list)
    rejected: set[str] = set()
    for record in customer_spill.read(bucket):
        if record[0] == "Q":
            cid, row = record[2], int(record[1])
            rejected.add(cid)
        else:
            values = record[1:]
            cid, row = values[0], int(values[-1])
            valid.setdefault(cid, values)
        rows_of[cid].append(row)
    for cid, rows in rows_of.items():
        if len(rows) > 1:
            for row in rows:
                quarantine.add(
                    Problem(
                        customers_file,
                        row,
                        cid,
                        "customer_id",
                        "duplicate",
                        f"customer_id appears on rows {', '.join(map(str, rows))}",
                    )
                )
            rejected.add(cid)

    charges: dict[str, list[list[str]]] = defaultdict(list)
    bad_charges: dict[str, list[int]] = defaultdict(list)
    for record in charge_spill.read(bucket):
        if record[0] == "Q":
            bad_charges[record[2]].append(int(record[1]))
        else:
            charges[record[1]].append(record[1:])
    for cid in bad_charges:
        if cid in valid and cid not in rejected:
            rows = bad_charges[cid]
            quarantine.add(
                Problem(
                    customers_file,
                    rows_of[cid][0],
                    cid,
                    "*",
                    "invalid_charges",
                    f"invalid charge row(s) {', '.join(map(str, rows))} in {charges_file}",
                )
            )
            rejected.add(cid)
    for cid, items in charges.items():
        if cid not in rows_of:
            reason, detail = "unknown_customer", f"no customer {cid!r} in {customers_file}"
        elif cid in rejected:
            reason, detail = "customer_quarantined", f"customer {cid!r} is quarantined"
        else:
            continue
        for item in items:
            quarantine.add(Problem(charges_file, int(item[1]), cid, "customer_id", reason, detail))
    for cid in valid:
        if cid not in rejected and cid not in charges:
            quarantine.add(
                Problem(
                    customers_file,
                    rows_of[cid][0],
                    cid,
                    "*",
                    "no_charges",
                    f"no charge for this customer in {charges_file}",
                )
            )
            rejected.add(cid)
    for cid in rejected:
        quarantine.quarantine_customer(cid)
    kept = sorted((v for cid, v in valid.items() if cid not in rejected), key=lambda v: v[0])
    kept_charges = [c for v in kept for c in charges[v[0]]]
    return kept, kept_charges, len(rows_of)


def _write_chunk(staging: BlobStore, cycle_id: str, number: int, customers, charges) -> ChunkRef:
    for name, fields, rows in (
        ("customers", CUSTOMER_FIELDS, customers),
        ("charges", CHARGE_FIELDS, charges),
    ):
        table = pa.table(
            {f: pa.array([r[i] for r in rows], pa.string()) for i, f in enumerate(fields)}
        )
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        staging.write_bytes(chunk_key(cycle_id, number, name), buffer.getvalue().to_pybytes())
    return ChunkRef(
        cycle_id=cycle_id, number=number, total=0, customers=len(customers), charges=len(charges),
        first_customer=customers[0][0], last_customer=customers[-1][0],
    )  # fmt: skip


def chunk_key(cycle_id: str, chunk: int, table: str) -> str:
    return f"{cycle_id}/chunk-{chunk:05d}/{table}.parquet"


def read_chunk_customer_ids(staging: BlobStore, ref: ChunkRef) -> list[str]:
    """Only the customer ids of a staged chunk."""
    data = staging.read_bytes(chunk_key(ref.cycle_id, ref.number, "customers"))
    return pq.read_table(pa.BufferReader(data), columns=["customer_id"]).column(0).to_pylist()


def read_chunk(staging: BlobStore, ref: ChunkRef) -> list[tuple[Customer, list[Charge]]]:
    """The customers of one staged chunk with their charges, in customer_id order."""
    from datetime import date
    from decimal import Decimal

    def table(name: str) -> list[dict[str, str]]:
        return pq.read_table(
            pa.BufferReader(staging.read_bytes(chunk_key(ref.cycle_id, ref.number, name)))
        ).to_pylist()

    by_customer: dict[str, list[Charge]] = defaultdict(list)
    for c in table("charges"):
        by_customer[c["customer_id"]].append(
            Charge(
                customer_id=c["customer_id"], description=c["description"],
                quantity=Decimal(c["quantity"]), unit_price=Decimal(c["unit_price"]),
                vat_rate=Decimal(c["vat_rate"]),
                service_start=date.fromisoformat(c["service_start"]) if c["service_start"] else None,
                service_end=date.fromisoformat(c["service_end"]) if c["service_end"] else None,
                row=int(c["row"]),
            )
        )  # fmt: skip
    result = []
    for c in table("customers"):
        customer = customer_from_row(c)
        result.append((customer, by_customer[customer.customer_id]))
    return result


def quarantine_counts(report_csv: bytes) -> Counter:
    """How many entries of each reason a quarantine report holds."""
    reader = csv.DictReader(io.StringIO(report_csv.decode("utf-8")))
    return Counter(r["reason"] for r in reader)
