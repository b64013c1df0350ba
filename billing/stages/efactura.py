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
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.deadlines import WARN_DAYS, reporting_deadline, working_days_left
from billing.domain.moments import as_utc
from billing.stages.progress import NO_PROGRESS, Progress
from storage.archive import Archive, sha256_hex
from storage.ledger import efactura_documents, invoices

BATCH = 100  # XMLs a validator is handed at once
AHEAD = 2  # batches in flight per validator process
IN_BATCH = 5000  # values in one IN list


@dataclass(frozen=True)
class ValidationResult:
    """XMLs this call found valid and invalid."""

    valid: int = 0
    invalid: int = 0

    def __add__(self, other: ValidationResult) -> ValidationResult:
        return ValidationResult(self.valid + other.valid, self.invalid + other.invalid)


_validator = None


def finding(layer: str, rule: str, message: str, location: str = "", fatal: bool = True) -> dict:
    """One finding as the ledger keeps it (`efactura_documents.findings` is a JSON list)."""
    return {"layer": layer, "rule": rule, "message": message, "location": location, "fatal": fatal}


ARCHIVE_CHANGED = [
    finding(
        "archive", "ARCHIVE", "the archived XML is not the one the ledger recorded (sha256 differs)"
    )
]


def findings_of(xmls: Sequence[bytes | None]) -> list[list[dict]]:
    """Each XML's findings (what a validator process sends back); None stands for an archived
    XML whose bytes differ from the ledger's. The stylesheet is compiled once per process."""
    global _validator
    if _validator is None:
        from renderers.efactura.validation import Validator

        _validator = Validator()
    return [
        ARCHIVE_CHANGED if xml is None
        else [finding(f.layer, f.rule, f.message, f.location, f.fatal) for f in _validator.validate(xml)]
        for xml in xmls
    ]  # fmt: skip


def _anaf_findings(errors: Sequence[str]) -> str:
    return json.dumps([finding("anaf", "ANAF", error) for error in errors], ensure_ascii=False)


def validate_pending(
    engine: Engine,
    archive: Archive,
    cycle_id: str | None = None,
    validators: Executor | None = None,
    workers: int = 1,
    progress: Progress = NO_PROGRESS,
    customer_ids: Sequence[str] | None = None,
) -> ValidationResult:
    """Validate the pending, not yet validated XMLs of `cycle_id` (or of every cycle); with
    `customer_ids` (a chunk of the cycle run), only those customers' in `cycle_id`."""
    todo = _unvalidated(engine, cycle_id, customer_ids)
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


def _unvalidated(
    engine: Engine, cycle_id: str | None, customer_ids: Sequence[str] | None
) -> list[sa.Row]:
    """The XMLs to validate, in number order. A chunk's are read from its side: its invoices by
    the (cycle, customer) index, then their XMLs by number, so a chunk never scans what the
    whole cycle has left."""
    table = efactura_documents
    columns = (table.c.number, table.c.key, table.c.version_id, table.c.sha256)
    unvalidated = (table.c.state == "pending") & table.c.validated_at.is_(None)
    with engine.connect() as conn:
        if customer_ids is None:
            query = sa.select(*columns).where(unvalidated)
            if cycle_id is not None:
                query = query.where(table.c.cycle_id == cycle_id)
            return conn.execute(query.order_by(table.c.number)).all()
        if cycle_id is None:
            raise ValueError("customer_ids are a chunk of one cycle: name the cycle")
        found: list[sa.Row] = []
        for start in range(0, len(customer_ids), IN_BATCH):
            found += conn.execute(
                sa.select(*columns)
                .join(invoices, invoices.c.number == table.c.number)
                .where(invoices.c.cycle_id == cycle_id,
                       invoices.c.customer_id.in_(customer_ids[start : start + IN_BATCH]),
                       unvalidated)
            ).all()  # fmt: skip
    return sorted(found, key=lambda row: row.number)


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
    clean = [number for number, found in valid if not found]
    with engine.begin() as conn:
        if clean:  # most XMLs: no finding at all, one statement for the batch
            conn.execute(
                table.update()
                .where(table.c.number.in_(clean), pending)
                .values(validated_at=now, findings="")
            )
        for number, found in valid:  # warnings are kept too
            if not found:
                continue
            conn.execute(
                table.update()
                .where(table.c.number == number, pending)
                .values(validated_at=now, findings=json.dumps(found, ensure_ascii=False))
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
    states: dict[str, int] = {}
    for state, validated, count in counts:
        name = (
            ("pending validated" if validated else "pending not validated")
            if state == "pending"
            else state
        )
        states[name] = states.get(name, 0) + count
    return {"states": states, "invalid": invalid_examples(engine, cycle_id, examples)}


def invalid_examples(engine: Engine, cycle_id: str | None, limit: int) -> list[dict]:
    """The first `limit` invalid XMLs of `cycle_id` (or of every cycle), in number order, each
    with the fatal rules it breaks as `[rule] message`."""
    table = efactura_documents
    where = [table.c.cycle_id == cycle_id] if cycle_id is not None else []
    with engine.connect() as conn:
        invalid = conn.execute(
            sa.select(table.c.number, table.c.cycle_id, table.c.findings)
            .where(*where, table.c.state == "invalid")
            .order_by(table.c.number)
            .limit(limit)
        ).all()
    return [
        {
            "number": r.number,
            "cycle_id": r.cycle_id,
            "rules": [
                f"[{f['rule']}] {f['message']}" for f in json.loads(r.findings) if f["fatal"]
            ],
        }
        for r in invalid
    ]


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


# --- upload and tracking -----------------------------------------------------------------------

# an unanswered upload not in ANAF's message list by then never got there
RECONCILE_AFTER = timedelta(hours=1)
LIST_MARGIN = timedelta(minutes=10)  # the message list is read from this long before an upload


@dataclass(frozen=True)
class SubmitResult:
    """Uploads this call made (`uploaded`), that went unanswered (`unanswered`: looked for in
    the message list by `sync`), and that ANAF refused outright (`refused`); `rate_limited`:
    it stopped early on ANAF's limits."""

    uploaded: int = 0
    unanswered: int = 0
    refused: int = 0
    rate_limited: bool = False


def submit_pending(
    engine: Engine, archive: Archive, client, cycle_id: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> SubmitResult:  # fmt: skip
    """Upload every validated pending XML never uploaded (B2B for a customer with a CUI, B2C
    otherwise). The attempt is recorded before the request: a reply that never comes leaves it
    marked, and `sync` finds it in ANAF's message list instead of uploading it again."""
    from notifiers.anaf import AnafRefused, RateLimited, UploadUnanswered
    from renderers.efactura.ubl import is_company_tax_id

    table = efactura_documents
    query = (
        sa.select(table.c.number, table.c.key, table.c.version_id, table.c.sha256,
                  invoices.c.customer_tax_id)
        .join(invoices, invoices.c.number == table.c.number)
        .where(table.c.state == "pending", table.c.validated_at.is_not(None),
               table.c.upload_started_at.is_(None))
        .order_by(table.c.number)
    )  # fmt: skip
    if cycle_id is not None:
        query = query.where(table.c.cycle_id == cycle_id)
    with engine.connect() as conn:
        todo = conn.execute(query).all()
    progress.begin(len(todo))
    uploaded = unanswered = refused = 0
    for row in todo:
        xml = archive.get(row.key, row.version_id)
        if sha256_hex(xml) != row.sha256:  # never upload what the ledger did not record
            _set(engine, row.number, state="invalid", findings=json.dumps(ARCHIVE_CHANGED))
            continue
        started = datetime.now(UTC)
        if not _set(engine, row.number, only_if_not_started=True, upload_started_at=started):
            continue  # another worker took it
        try:
            index = client.upload(xml, b2c=not is_company_tax_id(row.customer_tax_id))
        except RateLimited:
            _set(engine, row.number, upload_started_at=None)  # ANAF took nothing: try later
            return SubmitResult(uploaded, unanswered, refused, rate_limited=True)
        except UploadUnanswered:
            unanswered += 1
        except AnafRefused as exc:
            refused += 1
            _set(engine, row.number, state="rejected", findings=_anaf_findings(exc.errors))
        else:
            uploaded += 1
            _set(
                engine,
                row.number,
                state="uploaded",
                upload_index=index,
                uploaded_at=datetime.now(UTC),
            )
        progress.advance(1)
    return SubmitResult(uploaded, unanswered, refused)


@dataclass(frozen=True)
class SyncResult:
    accepted: int = 0
    rejected: int = 0
    processing: int = 0
    reconciled: int = 0  # unanswered uploads found in the message list
    released: int = 0  # unanswered uploads ANAF never got: to be uploaded again
    rate_limited: bool = False


def sync(
    engine: Engine, archive: Archive, client, retention_years: int, now: datetime | None = None
) -> SyncResult:
    """Poll each uploaded XML's status; archive ANAF's response ZIP beside the XML once it is
    processed (the signed invoice: accepted; the error list: rejected, with ANAF's errors).
    Unanswered uploads are looked for in the message list first."""
    from notifiers.anaf import RateLimited

    now = now or datetime.now(UTC)
    counts = dict.fromkeys(("accepted", "rejected", "processing", "reconciled", "released"), 0)
    try:
        reconciled, released = _reconcile(engine, client, now)
        counts["reconciled"], counts["released"] = reconciled, released
        table = efactura_documents
        with engine.connect() as conn:
            uploaded = conn.execute(
                sa.select(table.c.number, table.c.customer_id, table.c.upload_index,
                          invoices.c.issue_date)
                .join(invoices, invoices.c.number == table.c.number)
                .where(table.c.state == "uploaded")
                .order_by(table.c.number)
            ).all()  # fmt: skip
        for row in uploaded:
            counts[_poll(engine, archive, client, row, retention_years)] += 1
    except RateLimited:
        return SyncResult(**counts, rate_limited=True)
    return SyncResult(**counts)


def _poll(engine, archive, client, row, retention_years) -> str:
    from billing.domain.layout import efactura_response_key, retention_end
    from notifiers.anaf import zip_invoice_errors

    status = client.status(row.upload_index)
    if status.state == "in prelucrare":
        return "processing"
    errors: list[str] = []
    response = {}
    if status.download_id:
        data = client.download(status.download_id)
        stored = archive.put_once(
            efactura_response_key(row.customer_id, row.number), data,
            retention_end(row.issue_date, retention_years),
        )  # fmt: skip
        response = {"download_id": status.download_id, "response_key": stored.key,
                    "response_sha256": stored.sha256, "response_version_id": stored.version_id}  # fmt: skip
        if status.state != "ok":
            errors = zip_invoice_errors(data)
    if status.state == "ok":
        _set(engine, row.number, state="accepted", **response)
        return "accepted"
    errors = errors or [status.state]
    _set(engine, row.number, state="rejected", findings=_anaf_findings(errors), **response)
    return "rejected"


def _reconcile(engine: Engine, client, now: datetime) -> tuple[int, int]:
    """Unanswered uploads: an accepted message of the list whose invoice is one of them gets
    its index (and is polled as uploaded); one not listed after RECONCILE_AFTER never reached
    ANAF and may be uploaded again."""
    from notifiers.anaf import SENT_KINDS, zip_invoice_number

    table = efactura_documents
    with engine.connect() as conn:
        waiting = {
            r.number: r
            for r in conn.execute(
                sa.select(table.c.number, table.c.upload_started_at).where(
                    table.c.state == "pending", table.c.upload_started_at.is_not(None)
                )
            )
        }
        if not waiting:
            return 0, 0
        known = set(
            conn.execute(sa.select(table.c.upload_index).where(table.c.upload_index.is_not(None))).scalars()
        )  # fmt: skip
    oldest = min(as_utc(r.upload_started_at) for r in waiting.values())
    found = 0
    # from a little before the oldest unanswered upload: clocks differ
    for message in client.messages(oldest - LIST_MARGIN):
        if message.upload_index in known or not message.download_id:
            continue
        if message.kind not in SENT_KINDS:  # an invoice received, a buyer's message
            continue
        number = zip_invoice_number(client.download(message.download_id))
        if number in waiting:
            _set(engine, number, state="uploaded", upload_index=message.upload_index,
                 uploaded_at=now)  # fmt: skip
            waiting.pop(number)
            found += 1
    released = 0
    for number, row in waiting.items():
        if now - as_utc(row.upload_started_at) >= RECONCILE_AFTER:
            _set(engine, number, upload_started_at=None)
            released += 1
    return found, released


def _set(engine: Engine, number: str, only_if_not_started: bool = False, **values) -> bool:
    """Update one XML's row; a state change records its time. False when nothing matched."""
    table = efactura_documents
    if "state" in values:
        values["state_at"] = datetime.now(UTC)
    where = [table.c.number == number]
    if only_if_not_started:
        where.append(table.c.upload_started_at.is_(None))
    with engine.begin() as conn:
        return conn.execute(table.update().where(*where).values(**values)).rowcount == 1
