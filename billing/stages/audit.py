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

import hashlib
import itertools
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

import ijson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.layout import invoice_key, manifest_key
from billing.stages.archiving import MANIFEST_ROWS, number_order
from storage.archive import DOWNLOAD_CHUNK, Archive, sha256_hex
from storage.ledger import (
    efactura_documents,
    invoice_documents,
    invoices,
    manifests,
    series_counters,
)

READERS = 8  # concurrent object reads
READ_AHEAD = 64  # manifest entries waiting for a reader: memory stays flat
PAGE = 1000  # archive keys compared with the ledger per query
OWNED_PREFIXES = ("invoices/", "efactura/")  # every object under these belongs to an invoice
EFACTURA_SUFFIXES = (".xml", ".anaf.zip")


def verify_cycle(engine: Engine, archive: Archive, cycle_id: str) -> list[str]:
    """Every disagreement between the archive, the cycle manifest, the chain and the ledger."""
    problems: list[str] = []
    with _fetched_manifest(engine, archive, cycle_id, problems) as manifest:
        if manifest is None:
            return problems
        ledger: list[str] = []
        compared = _compared_with_ledger(engine, cycle_id, manifest.entries(problems), ledger)
        objects = _check_objects(archive, compared)
        problems += ledger + objects
        problems += _check_chain(engine, archive, manifest)
    problems += _check_numbering(engine, cycle_id)
    problems += _check_unowned(engine, archive)
    return problems


class _Manifest:
    """A downloaded manifest, spooled to a temporary file: at a million invoices it is about
    330 MB, so its entries are read one at a time (ijson) and never held together."""

    def __init__(self, key: str, spool: BinaryIO) -> None:
        self.key, self.spool = key, spool
        spool.seek(0)
        self.sha256 = hashlib.file_digest(spool, "sha256").hexdigest()
        self.valid, self.cycle_id, self.previous_sha256 = True, None, None
        try:
            self.cycle_id = self._scalar("cycle_id")
            self.previous_sha256 = self._scalar("previous_sha256")  # reads to the end: valid JSON
        except ijson.JSONError:
            self.valid = False

    def _scalar(self, name: str) -> object:
        self.spool.seek(0)
        return next(ijson.items(self.spool, name), None)

    def entries(self, problems: list[str]) -> Iterator[dict]:
        """The `invoices` entries in file order; one that is not an invoice entry is named."""
        self.spool.seek(0)
        try:
            for index, entry in enumerate(ijson.items(self.spool, "invoices.item")):
                if isinstance(entry, dict) and isinstance(entry.get("number"), str):
                    yield entry
                else:
                    problems.append(f"{self.key}: invoices[{index}] is not an invoice entry")
        except ijson.JSONError:
            problems.append(f"{self.key}: not valid JSON")

    def copy_to(self, path: Path) -> None:
        self.spool.seek(0)
        with path.open("wb") as out:
            shutil.copyfileobj(self.spool, out, DOWNLOAD_CHUNK)


@contextmanager
def _downloaded(archive: Archive, key: str, version_id: str | None) -> Iterator[_Manifest]:
    """The manifest under `key`, spooled; FileNotFoundError when it is not in the archive."""
    with tempfile.TemporaryFile() as spool:
        archive.download(key, spool, version_id)
        yield _Manifest(key, spool)


@contextmanager
def _fetched_manifest(
    engine: Engine, archive: Archive, cycle_id: str, problems: list[str]
) -> Iterator[_Manifest | None]:
    """The cycle manifest as the ledger recorded it, checked against the ledger's row; None
    (with the reason in `problems`) when there is none to read."""
    key = manifest_key(cycle_id)
    with engine.connect() as conn:
        row = conn.execute(sa.select(manifests).where(manifests.c.cycle_id == cycle_id)).first()
    if row is None:
        problems.append(f"cycle {cycle_id}: the ledger records no manifest (cycle not finalized?)")
        yield None
        return
    with ExitStack() as stack:
        try:
            manifest = stack.enter_context(_downloaded(archive, key, row.version_id))
        except FileNotFoundError:
            problems.append(f"{key}: missing from the archive")
            yield None
            return
        if manifest.sha256 != row.sha256:
            problems.append(
                f"{key}: sha256 {manifest.sha256[:12]}... differs from the "
                f"ledger's {row.sha256[:12]}... (the manifest was changed)"
            )
        if not manifest.valid:
            problems.append(f"{key}: not valid JSON")
            yield None
            return
        current = archive.head(key)
        if current is None:
            problems.append(f"{key}: deleted (no current version)")
        elif row.version_id and current.version_id != row.version_id:
            problems.append(f"{key}: has a newer version than the archived one")
        if manifest.previous_sha256 != row.previous_sha256:
            problems.append(f"{key}: previous_sha256 differs from the ledger's chain")
        yield manifest


def _ledger_rows(cycle_id: str):
    xml = efactura_documents
    return sa.select(
        invoices.c.number, invoices.c.customer_id, invoices.c.issue_date, invoices.c.total,
        invoice_documents.c.key, invoice_documents.c.size, invoice_documents.c.sha256,
        invoice_documents.c.version_id, xml.c.key.label("xml_key"),
        xml.c.size.label("xml_size"), xml.c.sha256.label("xml_sha256"),
        xml.c.version_id.label("xml_version_id"),
    ).select_from(invoices.outerjoin(invoice_documents).outerjoin(xml)).where(
        invoices.c.cycle_id == cycle_id
    )  # fmt: skip


def _compared_with_ledger(
    engine: Engine, cycle_id: str, entries: Iterable[dict], problems: list[str]
) -> Iterator[dict]:
    """Each manifest entry, after comparing it with the ledger's invoice (problems go into
    `problems`).

    A merge of the two in invoice-number order, the order the manifest is written in: the
    ledger is read a batch at a time, so nothing grows with the cycle. An entry out of that
    order (an edited manifest) is looked up by its number; ledger rows passed over wait in
    `skipped` until an entry claims them or the walk ends, so they stay few.
    """
    query = _ledger_rows(cycle_id)
    in_order = query.order_by(number_order(engine)).execution_options(yield_per=MANIFEST_ROWS)
    with engine.connect() as conn:  # one: SQLite's ledger lets one connection in at a time
        rows = iter(conn.execute(in_order))
        row = next(rows, None)
        skipped: dict[str, sa.Row] = {}
        last = ""
        for entry in entries:
            number = entry["number"]
            if number in skipped:
                _compare(skipped.pop(number), entry, problems)
            elif number > last:
                while row is not None and row.number < number:
                    skipped[row.number] = row
                    row = next(rows, None)
                if row is not None and row.number == number:
                    _compare(row, entry, problems)
                    row = next(rows, None)
                else:
                    problems.append(f"invoice {number}: in the manifest but not in the ledger")
            else:  # out of order and not waiting: listed before, or not this cycle's invoice
                known = conn.execute(query.where(invoices.c.number == number)).first()
                problems.append(
                    f"invoice {number}: listed twice in the manifest"
                    if known is not None
                    else f"invoice {number}: in the manifest but not in the ledger"
                )
            last = max(last, number)
            yield entry
        # what no entry claimed, in number order: the skipped rows all precede `row`
        rest = (r.number for r in itertools.chain([row] if row else [], rows))
        for unlisted in itertools.chain(sorted(skipped), rest):
            problems.append(f"invoice {unlisted}: in the ledger but not in the manifest")


def _compare(row: sa.Row, entry: dict, problems: list[str]) -> None:
    expected = {
        "customer_id": row.customer_id, "issue_date": row.issue_date.isoformat(),
        "total": f"{row.total:.2f}", "key": row.key, "size": row.size, "sha256": row.sha256,
        "version_id": row.version_id,
    }  # fmt: skip
    _differences(row.number, "", entry, expected, problems)
    if "efactura" not in entry:  # listed before its XML was made (or a manifest before contract 7)
        return
    if row.xml_key is None:
        problems.append(
            f"invoice {row.number}: the manifest lists an e-Factura XML the ledger has not"
        )
        return
    expected = {
        "key": row.xml_key, "size": row.xml_size, "sha256": row.xml_sha256,
        "version_id": row.xml_version_id,
    }  # fmt: skip
    xml = entry["efactura"] if isinstance(entry["efactura"], dict) else {}
    _differences(row.number, "efactura ", xml, expected, problems)


def _differences(number: str, what: str, entry: dict, expected: dict, problems: list[str]) -> None:
    for field, value in expected.items():
        if entry.get(field) != value:
            problems.append(
                f"invoice {number}: manifest {what}{field} {entry.get(field)!r} != ledger {value!r}"
            )


def _check_objects(
    archive: Archive, entries: Iterable[dict], fetch: Callable | None = None
) -> list[str]:
    """Re-read every object and compare its bytes with the manifest: READERS at a time, with
    at most READ_AHEAD entries in flight."""

    def check(entry: dict) -> list[str]:
        found = check_object(entry["number"], entry)
        if "efactura" in entry:  # its e-Factura XML, checked the same way
            xml = entry["efactura"]
            found += check_object(entry["number"], xml if isinstance(xml, dict) else {})
        return found

    def check_object(number: str, entry: dict) -> list[str]:
        key = entry.get("key")
        if not isinstance(key, str):
            return [f"invoice {number}: the manifest names no object"]
        try:
            data = (fetch or archive.get)(key, entry.get("version_id"))
        except FileNotFoundError:
            return [f"invoice {number}: {key} is missing from the archive"]
        found = []
        if len(data) != entry.get("size"):
            found.append(
                f"invoice {number}: {key} has {len(data)} bytes, manifest says {entry.get('size')}"
            )
        if sha256_hex(data) != entry.get("sha256"):
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

    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        in_flight: deque[Future] = deque()
        for entry in entries:
            in_flight.append(pool.submit(check, entry))
            if len(in_flight) >= READ_AHEAD:
                problems += in_flight.popleft().result()
        while in_flight:
            problems += in_flight.popleft().result()
    return problems


def _check_chain(engine: Engine, archive: Archive, manifest: _Manifest) -> list[str]:
    """Walk previous_sha256 back to the first manifest, re-hashing each one on the way."""
    with engine.connect() as conn:
        by_sha = {r.sha256: r for r in conn.execute(sa.select(manifests))}
    problems, seen = [], set()
    previous, after = manifest.previous_sha256, manifest.cycle_id
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
            with _downloaded(archive, row.key, row.version_id) as older:
                sha256, link = older.sha256, older.previous_sha256
        except FileNotFoundError:
            return [*problems, f"manifest chain: {row.key} is missing from the archive"]
        if sha256 != previous:
            return [
                *problems,
                f"manifest chain: {row.key} was changed (sha256 differs from {after}'s link)",
            ]
        previous, after = link, row.cycle_id
    return problems


def _check_numbering(engine: Engine, cycle_id: str) -> list[str]:
    """The cycle's series is numbered 1..N with no gap and no duplicate: counted by the
    database (the first gap found through the (series, seq) index), not read into memory."""
    problems = []
    with engine.connect() as conn:
        series = (
            conn.execute(
                sa.select(invoices.c.series).where(invoices.c.cycle_id == cycle_id).distinct()
            )
            .scalars()
            .all()
        )
        for name in series:
            last = conn.execute(
                sa.select(series_counters.c.last_number).where(series_counters.c.series == name)
            ).scalar_one()
            in_series = invoices.c.series == name
            used, distinct, within = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(sa.distinct(invoices.c.seq)),
                    sa.func.count(sa.distinct(invoices.c.seq)).filter(
                        invoices.c.seq.between(1, last)
                    ),
                ).where(in_series)
            ).one()
            if within < last:
                problems.append(
                    f"series {name}: {last - within} number(s) missing, "
                    f"first {_first_missing(conn, name, last)}"
                )
            if distinct > within:
                beyond = conn.execute(
                    sa.select(sa.func.min(invoices.c.seq)).where(
                        in_series, ~invoices.c.seq.between(1, last)
                    )
                ).scalar_one()
                problems.append(f"series {name}: number(s) beyond the counter, first {beyond}")
            if used != distinct:
                problems.append(f"series {name}: a number is used twice")
    return problems


def _first_missing(conn: sa.Connection, series: str, last: int) -> int:
    """The lowest number of 1..last that the series does not use (one is missing)."""
    one = conn.execute(
        sa.select(invoices.c.seq).where(invoices.c.series == series, invoices.c.seq == 1)
    ).first()
    if one is None:
        return 1
    following = invoices.alias("following")
    return conn.execute(
        sa.select(sa.func.min(invoices.c.seq) + 1).where(
            invoices.c.series == series,
            invoices.c.seq.between(1, last - 1),
            ~sa.exists().where(following.c.series == series, following.c.seq == invoices.c.seq + 1),
        )
    ).scalar_one()


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
    with _fetched_manifest(engine, archive, cycle_id, problems) as manifest:
        if manifest is None:
            return problems
        to.mkdir(parents=True, exist_ok=True)

        def fetch(key: str, version_id: str | None) -> bytes:
            data = archive.get(key, version_id)
            path = to / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if progress and key.startswith("invoices/"):  # a step an invoice (its PDF)
                progress(1)
            return data

        problems += _check_objects(archive, manifest.entries(problems), fetch=fetch)
        (to / manifest_key(cycle_id)).parent.mkdir(parents=True, exist_ok=True)
        manifest.copy_to(to / manifest_key(cycle_id))
    return problems
