"""Auditor tools: verify a cycle's archive against its manifest, the manifest chain and the
ledger; download a cycle and verify it offline. Both only read, so read-only credentials do.

Every problem is one line naming what is wrong (the invoice number, the key, the manifest).

Verify also names every object under `invoices/` or `efactura/` that no invoice owns: a PDF the
ledger records as no invoice's document (and that is therefore in no manifest), or an e-Factura
file of no issued invoice. The PDF of an issued invoice without a document row yet (its cycle's
run is in progress, or crashed between storing and recording; its next run records it) is not
reported here: that cycle's own verify reports it unfinished. The archive is listed once and
compared with the ledger a page of keys at a time, by invoice number (the primary key), so the
cost is one listing and one indexed query per thousand objects, whatever the archive's size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.layout import invoice_key, manifest_key
from storage.archive import Archive, sha256_hex
from storage.ledger import invoice_documents, invoices, manifests, series_counters

READERS = 8  # concurrent object reads
PAGE = 1000  # archive keys compared with the ledger per query
OWNED_PREFIXES = ("invoices/", "efactura/")  # every object under these belongs to an invoice
EFACTURA_SUFFIXES = (".xml", ".anaf.zip")


def verify_cycle(engine: Engine, archive: Archive, cycle_id: str) -> list[str]:
    """Every disagreement between the archive, the cycle manifest, the chain and the ledger."""
    problems: list[str] = []
    manifest, _ = _read_manifest(engine, archive, cycle_id, problems)
    if manifest is None:
        return problems
    problems += _compare_with_ledger(engine, cycle_id, manifest)
    problems += _check_objects(archive, manifest["invoices"])
    problems += _check_chain(engine, archive, manifest)
    problems += _check_numbering(engine, cycle_id)
    problems += _check_unowned(engine, archive)
    return problems


def _read_manifest(engine, archive, cycle_id, problems) -> tuple[dict | None, bytes]:
    """The cycle manifest (parsed, and its bytes) as the ledger recorded it, checked."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(manifests).where(manifests.c.cycle_id == cycle_id)).first()
    if row is None:
        problems.append(f"cycle {cycle_id}: the ledger records no manifest (cycle not finalized?)")
        return None, b""
    try:
        data = archive.get(manifest_key(cycle_id), row.version_id)
    except FileNotFoundError:
        problems.append(f"{manifest_key(cycle_id)}: missing from the archive")
        return None, b""
    if sha256_hex(data) != row.sha256:
        problems.append(
            f"{manifest_key(cycle_id)}: sha256 {sha256_hex(data)[:12]}... differs from the "
            f"ledger's {row.sha256[:12]}... (the manifest was changed)"
        )
    try:
        manifest = json.loads(data)
    except ValueError:
        problems.append(f"{manifest_key(cycle_id)}: not valid JSON")
        return None, data
    current = archive.head(manifest_key(cycle_id))
    if current is None:
        problems.append(f"{manifest_key(cycle_id)}: deleted (no current version)")
    elif row.version_id and current.version_id != row.version_id:
        problems.append(f"{manifest_key(cycle_id)}: has a newer version than the archived one")
    if manifest.get("previous_sha256") != row.previous_sha256:
        problems.append(
            f"{manifest_key(cycle_id)}: previous_sha256 differs from the ledger's chain"
        )
    return manifest, data


def _compare_with_ledger(engine, cycle_id, manifest) -> list[str]:
    problems = []
    query = (
        sa.select(
            invoices.c.number, invoices.c.customer_id, invoices.c.issue_date, invoices.c.total,
            invoice_documents.c.key, invoice_documents.c.size, invoice_documents.c.sha256,
            invoice_documents.c.version_id,
        )
        .select_from(invoices.outerjoin(invoice_documents))
        .where(invoices.c.cycle_id == cycle_id)
    )  # fmt: skip
    with engine.connect() as conn:
        ledger = {r.number: r for r in conn.execute(query)}
    listed = {entry["number"]: entry for entry in manifest["invoices"]}
    for number in sorted(ledger.keys() - listed.keys()):
        problems.append(f"invoice {number}: in the ledger but not in the manifest")
    for number in sorted(listed.keys() - ledger.keys()):
        problems.append(f"invoice {number}: in the manifest but not in the ledger")
    for number in sorted(ledger.keys() & listed.keys()):
        row, entry = ledger[number], listed[number]
        expected = {
            "customer_id": row.customer_id, "issue_date": row.issue_date.isoformat(),
            "total": f"{row.total:.2f}", "key": row.key, "size": row.size, "sha256": row.sha256,
            "version_id": row.version_id,
        }  # fmt: skip
        for field, value in expected.items():
            if entry.get(field) != value:
                problems.append(
                    f"invoice {number}: manifest {field} {entry.get(field)!r} != ledger {value!r}"
                )
    return problems


def _check_objects(
    archive: Archive, entries: list[dict], fetch: Callable | None = None
) -> list[str]:
    """Re-read every object and compare its bytes with the manifest."""

    def check(entry: dict) -> list[str]:
        number, key = entry["number"], entry["key"]
        try:
            data = (fetch or archive.get)(key, entry.get("version_id"))
        except FileNotFoundError:
            return [f"invoice {number}: {key} is missing from the archive"]
        found = []
        if len(data) != entry["size"]:
            found.append(
                f"invoice {number}: {key} has {len(data)} bytes, manifest says {entry['size']}"
            )
        if sha256_hex(data) != entry["sha256"]:
            found.append(
                f"invoice {number}: {key} sha256 {sha256_hex(data)[:12]}... differs from the manifest"
            )
        if fetch is None:  # what a reader without a version id gets must be the archived one
            current = archive.head(key)
            if current is None:
                found.append(f"invoice {number}: {key} is deleted (no current version)")
            elif entry.get("version_id") and current.version_id != entry["version_id"]:
                found.append(f"invoice {number}: {key} has a newer version than the archived one")
        return found

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return [p for found in pool.map(check, entries) for p in found]


def _check_chain(engine, archive, manifest) -> list[str]:
    """Walk previous_sha256 back to the first manifest, re-hashing each one on the way."""
    with engine.connect() as conn:
        by_sha = {r.sha256: r for r in conn.execute(sa.select(manifests))}
    problems, seen = [], set()
    previous, after = manifest.get("previous_sha256"), manifest["cycle_id"]
    while previous is not None:
        if previous in seen:
            return [*problems, f"manifest chain: a loop at {previous[:12]}..."]
        seen.add(previous)
        row = by_sha.get(previous)
        if row is None:
            return [
                *problems,
                f"manifest chain: {after} points to {previous[:12]}..., which no manifest has",
            ]
        try:
            data = archive.get(row.key, row.version_id)
        except FileNotFoundError:
            return [*problems, f"manifest chain: {row.key} is missing from the archive"]
        if sha256_hex(data) != previous:
            return [
                *problems,
                f"manifest chain: {row.key} was changed (sha256 differs from {after}'s link)",
            ]
        previous, after = json.loads(data).get("previous_sha256"), row.cycle_id
    return problems


def _check_numbering(engine, cycle_id) -> list[str]:
    """The cycle's series is numbered 1..N with no gap and no duplicate."""
    with engine.connect() as conn:
        series = (
            conn.execute(
                sa.select(invoices.c.series).where(invoices.c.cycle_id == cycle_id).distinct()
            )
            .scalars()
            .all()
        )
        problems = []
        for name in series:
            last = conn.execute(
                sa.select(series_counters.c.last_number).where(series_counters.c.series == name)
            ).scalar_one()
            numbers = (
                conn.execute(
                    sa.select(invoices.c.seq)
                    .where(invoices.c.series == name)
                    .order_by(invoices.c.seq)
                )
                .scalars()
                .all()
            )
            expected = set(range(1, last + 1))
            missing, extra = sorted(expected - set(numbers)), sorted(set(numbers) - expected)
            if missing:
                problems.append(
                    f"series {name}: {len(missing)} number(s) missing, first {missing[0]}"
                )
            if extra:
                problems.append(f"series {name}: number(s) beyond the counter, first {extra[0]}")
            if len(numbers) != len(set(numbers)):
                problems.append(f"series {name}: a number is used twice")
    return problems


def _check_unowned(engine: Engine, archive: Archive) -> list[str]:
    """Objects under `invoices/` and `efactura/` that no invoice of the ledger owns."""
    problems = []
    for prefix in OWNED_PREFIXES:
        for page in _pages(archive.list(prefix), PAGE):
            problems += _unowned(engine, prefix, page)
    return problems


def _unowned(engine: Engine, prefix: str, keys: list[str]) -> list[str]:
    named = {key: _invoice_number(prefix, key) for key in keys}
    numbers = {number for number in named.values() if number}
    query = (
        sa.select(invoices.c.number, invoices.c.customer_id, invoice_documents.c.key)
        .select_from(invoices.outerjoin(invoice_documents))
        .where(invoices.c.number.in_(numbers))
    )
    with engine.connect() as conn:
        owners = {r.number: r for r in conn.execute(query)} if numbers else {}
    problems = []
    for key, number in named.items():
        owner = owners.get(number)
        if owner is None:
            owned = False
        elif prefix == "efactura/":
            owned = key.removesuffix(".anaf.zip").removesuffix(".xml") == (
                f"efactura/{owner.customer_id}/{number}"
            )
        elif owner.key is not None:
            owned = key == owner.key
        else:  # issued, PDF stored, not recorded yet: the cycle's run records it
            owned = key == invoice_key(owner.customer_id, number)
        if not owned:
            problems.append(
                f"{key}: in the archive, but no manifest lists it and the ledger records it "
                "as no invoice's (a stray or partial object)"
            )
    return problems


def _invoice_number(prefix: str, key: str) -> str | None:
    """The invoice number an object's name claims (`<prefix><customer>/<number><suffix>`)."""
    name = key.rpartition("/")[2]
    suffixes = (".pdf",) if prefix == "invoices/" else EFACTURA_SUFFIXES
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return None


def _pages(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    page: list[str] = []
    for key in keys:
        page.append(key)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def manifest_size(engine: Engine, cycle_id: str) -> int:
    """How many invoices the cycle's recorded manifest lists (for progress bars)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(manifests.c.invoices).where(manifests.c.cycle_id == cycle_id)
        ).scalar()
    return found or 0


def download_cycle(
    engine: Engine,
    archive: Archive,
    cycle_id: str,
    to: Path,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Download the cycle's manifest and every PDF it lists into `to`, verifying each one;
    returns the problems (empty when everything downloaded matches the manifest)."""
    problems: list[str] = []
    manifest, manifest_data = _read_manifest(engine, archive, cycle_id, problems)
    if manifest is None:
        return problems
    to.mkdir(parents=True, exist_ok=True)

    def fetch(key: str, version_id: str | None) -> bytes:
        data = archive.get(key, version_id)
        path = to / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if progress:
            progress(1)
        return data

    problems += _check_objects(archive, manifest["invoices"], fetch=fetch)
    (to / manifest_key(cycle_id)).parent.mkdir(parents=True, exist_ok=True)
    (to / manifest_key(cycle_id)).write_bytes(manifest_data)
    return problems
