"""The stage itself: read, validate, quarantine, and partition into chunks.

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
from collections import Counter, defaultdict
from pathlib import Path

from billing.domain.model import (
    Charge,
    ChunkRef,
    Customer,
    Problem,
    customer_to_row,
)
from billing.domain.validation import (
    CHARGE_COLUMNS,
    CUSTOMER_COLUMNS,
    REQUIRED_CHARGE_COLUMNS,
    REQUIRED_CUSTOMER_COLUMNS,
    ChargeValidator,
    CustomerValidator,
)
from billing.stages.staging.chunks import MAX_CHUNKS, StagedCycle, write_chunk
from billing.stages.staging.export import (
    RowError,
    count_rows,
    find_table,
    iter_rows,
    read_cycle_json,
)
from billing.stages.staging.spill import CUSTOMER_FIELDS, Quarantine, Spill, bucket_of
from renderers.fonts import undrawable
from storage.blobs import BlobStore


def stage_cycle(
    source: BlobStore,
    staging: BlobStore,
    cycle_id: str,
    chunk_size: int = 1000,
    work_dir: Path | None = None,
    max_chunks: int = MAX_CHUNKS,
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
    # chunk_size customers a chunk, larger when that would make more than max_chunks (at most
    # Airflow's max_map_length): a million customers make 256 chunks of about 3,900
    buckets = max(1, min(MAX_CHUNKS, max_chunks, math.ceil(total_rows / chunk_size)))

    with tempfile.TemporaryDirectory(prefix=f"stage-{cycle_id}-", dir=work_dir) as tmp:
        folder = Path(tmp)
        quarantine = Quarantine(folder / "quarantine.csv")
        customer_spill = Spill(folder, "customers", buckets)
        charge_spill = Spill(folder, "charges", buckets)

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
                chunks.append(write_chunk(staging, cycle_id, number, customers, charges))
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


def _spill_table(rows, validate, file, spill: Spill, quarantine: Quarantine, values_of):
    """One streaming pass over a table: validate each row, report its problems, and spill it
    (or, when invalid, just its id) to its customer's bucket. Returns (rows read, rows without
    a usable customer id)."""
    count = anonymous = 0
    for row, raw in rows:
        count += 1
        if isinstance(raw, RowError):
            quarantine.add(Problem(file, row, raw.customer_id, raw.column, raw.reason, raw.detail))
            if raw.customer_id:
                spill.add(
                    bucket_of(raw.customer_id, len(spill.paths)), ["Q", str(row), raw.customer_id]
                )
            else:
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

    def reject(cid: str, reason: str, detail: str) -> None:
        """Quarantine a valid customer for its charges, at the customer's first row."""
        quarantine.add(Problem(customers_file, rows_of[cid][0], cid, "*", reason, detail))
        rejected.add(cid)

    for cid in bad_charges:
        if cid in valid and cid not in rejected:
            rows = ", ".join(map(str, bad_charges[cid]))
            reject(cid, "invalid_charges", f"invalid charge row(s) {rows} in {charges_file}")
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
            reject(cid, "no_charges", f"no charge for this customer in {charges_file}")
    for cid in rejected:
        quarantine.quarantine_customer(cid)
    kept = sorted((v for cid, v in valid.items() if cid not in rejected), key=lambda v: v[0])
    kept_charges = [c for v in kept for c in charges[v[0]]]
    return kept, kept_charges, len(rows_of)


def quarantine_counts(report_csv: bytes) -> Counter:
    """How many entries of each reason a quarantine report holds."""
    reader = csv.DictReader(io.StringIO(report_csv.decode("utf-8")))
    return Counter(r["reason"] for r in reader)
