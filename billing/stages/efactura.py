"""e-Factura validation, fail closed: each archived XML still `pending` and not validated yet is
checked in ANAF's three layers (`renderers.efactura.validation`); one that breaks a fatal rule
becomes `invalid`, with every finding kept in the ledger (rule id, message, where), and is never
uploaded. One that passes stays `pending` with `validated_at` set: ready to upload.

The XML is read back from the archive, not made again, so what is validated is what would be
uploaded. Validation is CPU-bound (the EN 16931 schematron takes a few milliseconds an invoice):
batches go to `validators` (processes, each compiling the stylesheet once) when given.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.deadlines import WARN_DAYS, reporting_deadline, working_days_left
from billing.stages.progress import NO_PROGRESS, Progress
from storage.archive import Archive, sha256_hex
from storage.ledger import efactura_documents, invoices

BATCH = 100  # XMLs a validator is handed at once
AHEAD = 2  # batches in flight per validator process


@dataclass(frozen=True)
class ValidationResult:
    """XMLs this call found valid and invalid."""

    valid: int = 0
    invalid: int = 0

    def __add__(self, other: ValidationResult) -> ValidationResult:
        return ValidationResult(self.valid + other.valid, self.invalid + other.invalid)


_validator = None


def findings_of(xmls: Sequence[bytes | None]) -> list[list[dict]]:
    """Each XML's findings as plain dicts (what a validator process sends back); the
    stylesheet is compiled once per process."""
    global _validator
    if any(xml is None for xml in xmls):  # None: the archived bytes differ from the ledger's
        changed = [{"layer": "archive", "rule": "ARCHIVE", "fatal": True, "location": "",
                    "message": "the archived XML is not the one the ledger recorded (sha256 differs)"}]  # fmt: skip
        found = findings_of([xml for xml in xmls if xml is not None])
        return [changed if xml is None else found.pop(0) for xml in xmls]
    if _validator is None:
        from renderers.efactura.validation import Validator

        _validator = Validator()
    return [
        [
            {
                "layer": f.layer,
                "rule": f.rule,
                "message": f.message,
                "location": f.location,
                "fatal": f.fatal,
            }
            for f in _validator.validate(xml)
        ]  # fmt: skip
        for xml in xmls
    ]


def validate_pending(
    engine: Engine,
    archive: Archive,
    cycle_id: str | None = None,
    validators: Executor | None = None,
    workers: int = 1,
    progress: Progress = NO_PROGRESS,
) -> ValidationResult:
    """Validate the pending, not yet validated XMLs of `cycle_id` (or of every cycle)."""
    table = efactura_documents
    query = sa.select(table.c.number, table.c.key, table.c.version_id, table.c.sha256).where(
        table.c.state == "pending", table.c.validated_at.is_(None)
    )
    if cycle_id is not None:
        query = query.where(efactura_documents.c.cycle_id == cycle_id)
    with engine.connect() as conn:
        todo = conn.execute(query.order_by(efactura_documents.c.number)).all()
    progress.begin(len(todo))
    result = ValidationResult()
    in_flight: deque[tuple[Sequence[sa.Row], Future]] = deque()
    ahead = AHEAD * workers if validators is not None else 0
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        xmls = [archive.get(row.key, row.version_id) for row in batch]
        # what is validated must be what was recorded: a changed object is invalid as it is
        xmls = [
            xml if sha256_hex(xml) == row.sha256 else None
            for xml, row in zip(xmls, batch, strict=True)
        ]
        if validators is None:
            done: Future = Future()
            done.set_result(findings_of(xmls))
            in_flight.append((batch, done))
        else:
            in_flight.append((batch, validators.submit(findings_of, xmls)))
        while len(in_flight) > ahead:
            result += _finish(engine, *in_flight.popleft(), progress)
    while in_flight:
        result += _finish(engine, *in_flight.popleft(), progress)
    return result


def _finish(engine: Engine, rows: Sequence[sa.Row], future: Future, progress: Progress):
    result = _record(engine, rows, future.result())
    progress.advance(len(rows))
    return result


def _record(engine: Engine, rows: Sequence[sa.Row], findings: list[list[dict]]) -> ValidationResult:
    now = datetime.now(UTC)
    valid, invalid = [], []
    for row, found in zip(rows, findings, strict=True):
        (invalid if any(f["fatal"] for f in found) else valid).append((row.number, found))
    table = efactura_documents
    pending = (table.c.state == "pending") & table.c.validated_at.is_(None)
    with engine.begin() as conn:
        for number, found in valid:  # warnings are kept too
            conn.execute(
                table.update()
                .where(table.c.number == number, pending)
                .values(validated_at=now, findings=json.dumps(found, ensure_ascii=False) if found else "")
            )  # fmt: skip
        for number, found in invalid:
            conn.execute(
                table.update()
                .where(table.c.number == number, pending)
                .values(state="invalid", state_at=now, validated_at=now,
                        findings=json.dumps(found, ensure_ascii=False))
            )  # fmt: skip
    return ValidationResult(len(valid), len(invalid))


def status(engine: Engine, cycle_id: str | None = None, examples: int = 20) -> dict:
    """The XMLs by state (pending ones split into validated and not), and the first invalid
    ones with the rules they break."""
    table = efactura_documents
    where = [table.c.cycle_id == cycle_id] if cycle_id is not None else []
    ready = sa.case((table.c.validated_at.is_(None), False), else_=True).label("validated")
    with engine.connect() as conn:
        counts = conn.execute(
            sa.select(table.c.state, ready, sa.func.count()).where(*where).group_by(table.c.state, ready)
        ).all()  # fmt: skip
        invalid = conn.execute(
            sa.select(table.c.number, table.c.cycle_id, table.c.findings)
            .where(*where, table.c.state == "invalid")
            .order_by(table.c.number)
            .limit(examples)
        ).all()
    states: dict[str, int] = {}
    for state, validated, count in counts:
        name = (
            ("pending validated" if validated else "pending not validated")
            if state == "pending"
            else state
        )
        states[name] = states.get(name, 0) + count
    return {
        "states": states,
        "invalid": [
            {
                "number": r.number,
                "cycle_id": r.cycle_id,
                "rules": [
                    f"[{f['rule']}] {f['message']}" for f in json.loads(r.findings) if f["fatal"]
                ],
            }
            for r in invalid
        ],  # fmt: skip
    }


def deadlines(engine: Engine, today: date, cycle_id: str | None = None) -> list[dict]:
    """The invoices not accepted by ANAF yet (with an XML in any other state, or none) whose
    reporting deadline is at most `WARN_DAYS` working days away or past, grouped by issue date:
    the deadline, the working days left (negative: past), how many, in which states, and the
    first numbers."""
    table = efactura_documents
    state = sa.func.coalesce(table.c.state, "no XML").label("state")
    where = [sa.or_(table.c.state.is_(None), table.c.state != "accepted")]
    if cycle_id is not None:
        where.append(invoices.c.cycle_id == cycle_id)
    with engine.connect() as conn:
        groups = conn.execute(
            sa.select(invoices.c.issue_date, state, sa.func.count())
            .select_from(invoices.outerjoin(table))
            .where(*where)
            .group_by(invoices.c.issue_date, state)
        ).all()
        late: dict[date, dict] = {}
        for issue_date, in_state, count in groups:
            deadline = reporting_deadline(issue_date)
            left = working_days_left(deadline, today)
            if left > WARN_DAYS:
                continue
            entry = late.setdefault(issue_date, {
                "issue_date": issue_date.isoformat(), "deadline": deadline.isoformat(),
                "working_days_left": left, "invoices": 0, "states": {},
            })  # fmt: skip
            entry["invoices"] += count
            entry["states"][in_state] = count
        for issue_date, entry in late.items():
            entry["first"] = list(
                conn.execute(
                    sa.select(invoices.c.number)
                    .select_from(invoices.outerjoin(table))
                    .where(*where, invoices.c.issue_date == issue_date)
                    .order_by(invoices.c.number)
                    .limit(5)
                ).scalars()
            )
    return [late[day] for day in sorted(late)]
