"""Signed calls of the phone channels' back ends (the 411 line, the *100# menu, the SMS short
number) to the self-service API. `docs/phone-api.md` is the same scheme for the teams who sign.

A call carries three headers:

    X-Invoices-Caller      ivr, ussd or sms: the back end calling (recorded as a change's source)
    X-Invoices-Timestamp   when it was signed, in Unix seconds
    X-Invoices-Signature   lowercase hex HMAC-SHA256, keyed with the caller's key, over
                               timestamp "\\n" METHOD "\\n" path "\\n" sha256hex(body)

The caller's key is HMAC-SHA256(INVOICES_PORTAL_API_SECRET, "invoices-portal:api-request:" +
caller) (`Keys.derive`): the key then vouches for the caller header too, which the signed text
does not hold, and each back end can be given its own key and never the shared secret.

A call is refused (`Unsigned`, one answer whatever the reason) when a header is missing or
malformed, the timestamp is more than 300 seconds from the server's clock, the signature is not
the one expected (compared in constant time), or the signature was seen before: each accepted
signature is remembered in the ledger (`api_signatures`) for 11 minutes. A signature can only
ever be accepted within 300 s of its timestamp, so one seen over 600 s ago can never be valid
again and is forgotten.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from billing.accounts.keys import Keys
from storage.ledger import api_signatures

log = logging.getLogger(__name__)

CALLERS = ("ivr", "ussd", "sms")
CALLER_HEADER = "X-Invoices-Caller"
TIMESTAMP_HEADER = "X-Invoices-Timestamp"
SIGNATURE_HEADER = "X-Invoices-Signature"
MAX_SKEW_SECONDS = 300
REMEMBER_FOR = timedelta(seconds=2 * MAX_SKEW_SECONDS + 60)
PURGE_ONE_IN = 32  # forget old signatures on about one accepted call in 32

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


class Unsigned(Exception):
    """The call is not signed as the API requires. `reason` is for the server's log only: the
    caller is told nothing beyond "unauthorized"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedCall:
    caller: str
    signature: str  # lowercase hex, as remembered against replays


def caller_key(keys: Keys, caller: str) -> bytes:
    """The key `caller` signs with: derived from the shared secret for that caller alone."""
    return keys.derive(f"api-request:{caller}")


def signed_text(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """What the signature covers: timestamp, method, path (with `?query` if any) and the
    body's sha256, one per line."""
    return f"{timestamp}\n{method.upper()}\n{path}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign(key: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    return hmac.new(key, signed_text(timestamp, method, path, body), hashlib.sha256).hexdigest()


def verify(
    keys: Keys,
    caller: str | None,
    timestamp: str | None,
    signature: str | None,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
) -> SignedCall:
    """The call, when its headers are signed as the module docstring says; else `Unsigned`.
    Does not look for replays: `remember` does, once the signature is known to be good."""
    if caller not in CALLERS:
        raise Unsigned("missing or unknown caller")
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp):
        raise Unsigned("missing or malformed timestamp")
    if abs(now.timestamp() - int(timestamp)) > MAX_SKEW_SECONDS:
        raise Unsigned("timestamp too far from the server's clock")
    if signature is None or not _SIGNATURE.fullmatch(signature):
        raise Unsigned("missing or malformed signature")
    expected = sign(caller_key(keys, caller), timestamp, method, path, body)
    if not hmac.compare_digest(expected, signature.lower()):
        raise Unsigned("wrong signature")
    return SignedCall(caller, signature.lower())


def remember(engine: Engine, signature: str, now: datetime) -> bool:
    """Record `signature` as seen; False when it was seen before (a replay)."""
    try:
        with engine.begin() as conn:
            conn.execute(api_signatures.insert().values(signature=signature, seen_at=now))
    except IntegrityError:
        return False
    if secrets.randbelow(PURGE_ONE_IN) == 0:
        try:
            forget_old_signatures(engine, now)
        except DBAPIError as exc:  # housekeeping only: another worker may be at it
            log.debug("old API signatures not purged this time: %s", type(exc).__name__)
    return True


def forget_old_signatures(engine: Engine, now: datetime) -> int:
    """Delete the signatures seen longer ago than any could still be valid; returns how many."""
    with engine.begin() as conn:
        return conn.execute(
            api_signatures.delete().where(api_signatures.c.seen_at < now - REMEMBER_FOR)
        ).rowcount
