"""One-time SMS codes (NIST SP 800-63B-4 out-of-band authenticators; OWASP ASVS 5.0 6.5, 6.6).

- drawn with `secrets`: 6 digits, uniform;
- kept only as a keyed hash, bound to the challenge it was drawn for: the code proves nothing
  for any other challenge, and a copy of the database yields no code;
- valid `ttl` seconds (default 900: the operator's page promises 15 minutes; NIST SP 800-63B-4
  and ASVS 5.0 6.5.5 recommend 10, so operators who can should set INVOICES_OTP_TTL_SECONDS=600);
- single use; void after `max_failures` wrong tries (5); a new request for the same number voids
  every older code of that number.

A challenge is made whether or not the number belongs to a customer, so the caller's answer,
its timing and its cookies do not tell the two apart (ASVS 6.3.8); only a known mobile number
gets an SMS. The challenge's token is what the browser keeps (or, for a code asked by SMS,
nothing: the customer then gives number and code together).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from billing.accounts.clock import aware
from billing.accounts.keys import Keys, token_id
from billing.domain.gsm import transliterate
from billing.domain.phones import is_mobile
from notifiers.base import Outgoing
from storage.customers import customers_by_phone, standing
from storage.ledger import otp_challenges

CODE_DIGITS = 6
_KEEP = timedelta(days=1)  # an ended challenge is kept this long (for an incident's questions)
MAX_FAILURES = 5
ORIGINS = ("web", "sms")

CODE_TEXTS = {
    "ro": "{supplier}: codul tau de acces este {code}. Valabil {minutes} minute. Nu il da nimanui.",
    "en": "{supplier}: your access code is {code}. Valid for {minutes} minutes. Never share it.",
}


class Check(StrEnum):
    OK = "ok"
    WRONG = "wrong"  # wrong code, tries left
    LOCKED = "locked"  # this wrong try was the last one allowed: the code is void
    EXPIRED = "expired"
    SPENT = "spent"  # used, voided by a newer code, or locked earlier
    UNKNOWN = "unknown"  # no such challenge


@dataclass(frozen=True)
class CodeRequest:
    token: str  # the challenge's opaque token, for the browser's cookie
    message: Outgoing | None  # the SMS to send; None for a number no customer has


@dataclass(frozen=True)
class Verdict:
    check: Check
    phone: str = ""  # E.164, set when check is OK
    tries_left: int = 0


class Codes:
    def __init__(
        self,
        engine: Engine,
        keys: Keys,
        supplier_name: str,
        ttl_seconds: int = 900,
        max_failures: int = MAX_FAILURES,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.supplier_name = supplier_name
        self.ttl = timedelta(seconds=ttl_seconds)
        self.max_failures = max_failures

    def request(self, phone: str, origin: str, now: datetime) -> CodeRequest:
        """A new challenge for `phone` (E.164), voiding the number's older ones; the SMS that
        carries its code when a customer has that number and it is a mobile one."""
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
        token = secrets.token_urlsafe(32)
        challenge = token_id(token)
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        with self.engine.begin() as conn:
            conn.execute(
                otp_challenges.update()
                .where(
                    otp_challenges.c.phone == phone,
                    otp_challenges.c.used_at.is_(None),
                    otp_challenges.c.voided_at.is_(None),
                )
                .values(voided_at=now)
            )
            conn.execute(
                otp_challenges.insert().values(
                    id=challenge, phone=phone, code_hash=self._hash(challenge, code),
                    origin=origin, created_at=now, expires_at=now + self.ttl,
                    failed_attempts=0,
                )
            )  # fmt: skip
            if secrets.randbelow(64) == 0:  # now and then, forget challenges long over
                conn.execute(
                    otp_challenges.delete().where(otp_challenges.c.expires_at < now - _KEEP)
                )
            language = self._language(conn, phone)
        if language is None or not is_mobile(phone):
            return CodeRequest(token, None)
        text = CODE_TEXTS[language].format(
            supplier=self.supplier_name, code=code, minutes=int(self.ttl.total_seconds() // 60)
        )
        message = Outgoing(
            key=f"code:{challenge[:32]}", recipient=phone, subject="", text=transliterate(text)
        )
        return CodeRequest(token, message)

    def pending_phone(self, token: str, now: datetime) -> str | None:
        """The number of the challenge `token` names while its code can still be entered."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(otp_challenges).where(otp_challenges.c.id == token_id(token))
            ).first()
        if row is None or row.used_at is not None or row.voided_at is not None:
            return None
        return row.phone if now < aware(row.expires_at, now) else None

    def verify(self, token: str, code: str, now: datetime) -> Verdict:
        """Check `code` against the challenge the browser holds `token` of."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(otp_challenges)
                .where(otp_challenges.c.id == token_id(token))
                .with_for_update()
            ).first()
            return self._check(conn, row, code, now)

    def verify_by_phone(self, phone: str, code: str, now: datetime) -> Verdict:
        """Check `code` against the newest code of `phone` asked by SMS (the customer texted
        the short number and types number and code on the page)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(otp_challenges)
                .where(otp_challenges.c.phone == phone, otp_challenges.c.origin == "sms")
                .order_by(otp_challenges.c.created_at.desc())
                .limit(1)
                .with_for_update()
            ).first()
            return self._check(conn, row, code, now)

    def _check(self, conn: Connection, row, code: str, now: datetime) -> Verdict:
        if row is None:
            return Verdict(Check.UNKNOWN)
        if row.used_at is not None or row.voided_at is not None:
            return Verdict(Check.SPENT)
        if now >= aware(row.expires_at, now):
            return Verdict(Check.EXPIRED)
        code = code.strip().replace(" ", "")
        if hmac.compare_digest(row.code_hash, self._hash(row.id, code)):
            conn.execute(
                otp_challenges.update().where(otp_challenges.c.id == row.id).values(used_at=now)
            )
            return Verdict(Check.OK, phone=row.phone)
        failures = row.failed_attempts + 1
        locked = failures >= self.max_failures
        conn.execute(
            otp_challenges.update()
            .where(otp_challenges.c.id == row.id)
            .values(failed_attempts=failures, voided_at=now if locked else None)
        )
        if locked:
            return Verdict(Check.LOCKED)
        return Verdict(Check.WRONG, tries_left=self.max_failures - failures)

    def _hash(self, challenge: str, code: str) -> str:
        return self.keys.digest("otp-code", challenge, code)

    @staticmethod
    def _language(conn: Connection, phone: str) -> str | None:
        """The language of the number's (first) customer; None when no customer has it."""
        for customer_id in customers_by_phone(conn, phone):
            found = standing(conn, customer_id)
            if found is not None:
                return found.customer.language if found.customer.language in CODE_TEXTS else "ro"
        return None
