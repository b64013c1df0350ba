"""Each caller's request id answered once: the answer is kept in the ledger (`api_requests`) with
the sha256 of what was asked, so a retry of the same request gets the same answer and changes
nothing twice, and a request id reused for something else is refused (409).

What was asked is the endpoint and the body as parsed (keys sorted, no whitespace, absent
optional fields as null), so a retry serialised differently is still the same request.

`answer_once` records the answer in the transaction that makes the change: a crash leaves both
or neither. Work that cannot join a transaction (a code drawn and sent by SMS) `claim`s the
request id first instead, so it runs at most once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from storage.ledger import api_requests


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    replayed: bool = False  # the answer kept from an earlier call with this request id
    outcome: str = field(default="", compare=False)  # a word for the log
    headers: dict = field(default_factory=dict, compare=False)  # e.g. Retry-After; never kept


# How long a request id's answer is kept: far longer than any caller retries a request.
KEEP_ANSWERS = timedelta(days=30)

REUSED = Answer(409, {"error": "request_id_reused"}, outcome="request_id_reused")


def request_digest(endpoint: str, payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def answer_once(
    engine: Engine,
    caller: str,
    request_id: str,
    digest: str,
    now: datetime,
    work: Callable[[Connection], Answer],
) -> Answer:
    """The kept answer to (caller, request_id), or `work`'s, recorded in the transaction `work`
    ran in. Two calls racing with one request id: one commits, the other rolls back whole
    (the unique key) and gets the first one's answer."""
    try:
        with engine.begin() as conn:
            kept = _kept(conn, caller, request_id, digest)
            if kept is not None:
                return kept
            answer = work(conn)
            _record(conn, caller, request_id, digest, answer, now)
            return answer
    except IntegrityError:
        kept = replayed(engine, caller, request_id, digest)
        if kept is None:
            raise
        return kept


def replayed(engine: Engine, caller: str, request_id: str, digest: str) -> Answer | None:
    """The kept answer to (caller, request_id), 409 when it was asked for something else, or
    None when the request id is new."""
    with engine.begin() as conn:
        return _kept(conn, caller, request_id, digest)


def claim(
    engine: Engine, caller: str, request_id: str, digest: str, answer: Answer, now: datetime
) -> Answer | None:
    """Record `answer` for a request id not seen yet, before doing the work; None when this
    call holds the claim, else the answer a racing call kept."""
    try:
        with engine.begin() as conn:
            _record(conn, caller, request_id, digest, answer, now)
    except IntegrityError:
        kept = replayed(engine, caller, request_id, digest)
        if kept is None:
            raise
        return kept
    return None


def _kept(conn: Connection, caller: str, request_id: str, digest: str) -> Answer | None:
    row = conn.execute(
        sa.select(api_requests).where(
            api_requests.c.caller == caller, api_requests.c.request_id == request_id
        )
    ).first()
    if row is None:
        return None
    if row.body_sha256 != digest:
        return REUSED
    return Answer(row.status_code, json.loads(row.response), replayed=True, outcome="replayed")


def _record(
    conn: Connection, caller: str, request_id: str, digest: str, answer: Answer, now: datetime
) -> None:
    if secrets.randbelow(64) == 0:  # now and then, forget answers older than any retry
        conn.execute(api_requests.delete().where(api_requests.c.created_at < now - KEEP_ANSWERS))
    conn.execute(
        api_requests.insert().values(
            caller=caller, request_id=request_id, body_sha256=digest,
            status_code=answer.status, response=json.dumps(answer.body, ensure_ascii=False),
            created_at=now,
        )
    )  # fmt: skip
