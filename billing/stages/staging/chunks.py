"""The staged cycle's format: `staged.json` (chunks and counts) and each chunk's two Parquet
files under `<staging>/<cycle_id>/chunk-NNNNN/`, which tasks read by their `ChunkRef`."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from billing.domain.errors import InputError
from billing.domain.model import (
    Charge,
    ChunkRef,
    Customer,
    Cycle,
    customer_from_row,
)
from billing.domain.validation import (
    validate_cycle,
)
from billing.stages.staging.spill import CHARGE_FIELDS, CUSTOMER_FIELDS
from storage.blobs import BlobStore

MAX_CHUNKS = 1024  # Airflow's max_map_length: one mapped task per chunk


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


def load_staged(staging: BlobStore, cycle_id: str) -> StagedCycle:
    """The result of an earlier `stage_cycle`."""
    try:
        return StagedCycle.from_dict(json.loads(staging.read_bytes(f"{cycle_id}/staged.json")))
    except FileNotFoundError:
        raise InputError(
            staging.describe(f"{cycle_id}/staged.json"), "cycle not staged yet"
        ) from None


def write_chunk(staging: BlobStore, cycle_id: str, number: int, customers, charges) -> ChunkRef:
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
    """The customers of one staged chunk with their charges, in customer_id order.

    Read column by column, not as a dict per row; amounts and dates repeat from charge to
    charge, and each distinct text is converted once (Decimal and date are immutable)."""
    from datetime import date
    from decimal import Decimal

    def columns(name: str) -> dict[str, list[str]]:
        data = staging.read_bytes(chunk_key(ref.cycle_id, ref.number, name))
        return pq.read_table(pa.BufferReader(data)).to_pydict()

    decimals: dict[str, Decimal] = {}
    dates: dict[str, date | None] = {"": None}

    def decimal(text: str) -> Decimal:
        found = decimals.get(text)
        if found is None:
            found = decimals[text] = Decimal(text)
        return found

    def day(text: str) -> date | None:
        if text in dates:
            return dates[text]
        found = dates[text] = date.fromisoformat(text)
        return found

    by_customer: dict[str, list[Charge]] = defaultdict(list)
    c = columns("charges")
    for cid, description, quantity, unit_price, vat_rate, start, end, row in zip(
        c["customer_id"], c["description"], c["quantity"], c["unit_price"], c["vat_rate"],
        c["service_start"], c["service_end"], c["row"], strict=True,
    ):  # fmt: skip
        by_customer[cid].append(
            Charge(
                customer_id=cid, description=description, quantity=decimal(quantity),
                unit_price=decimal(unit_price), vat_rate=decimal(vat_rate),
                service_start=day(start), service_end=day(end), row=int(row),
            )
        )  # fmt: skip
    customers = columns("customers")
    names = list(customers)
    result = []
    for values in zip(*customers.values(), strict=True):
        customer = customer_from_row(dict(zip(names, values, strict=True)))
        result.append((customer, by_customer[customer.customer_id]))
    return result
