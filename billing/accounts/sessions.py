"""Page sessions: an opaque random token in a signed cookie, its state on the server.

The cookie holds `<token>.<timestamp>.<signature>` (itsdangerous' TimestampSigner over a key
derived for cookies); the ledger holds only the token's sha256, with the phone number proved,
the last time it was seen and its absolute end. A session ends at whichever comes first: `idle`
seconds without a request, `absolute` seconds after login, or logout (revoked on the server, so a
copied cookie is worthless afterwards). Every login makes a new token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, TimestampSigner
from sqlalchemy.engine import Engine

from billing.accounts.clock import aware
from billing.accounts.keys import Keys, token_id
from storage.ledger import portal_sessions

# A request refreshes `last_seen_at` only when the stored one is older than this: the idle
# timeout stays exact to a minute without one write per page view.
_TOUCH_EVERY = timedelta(seconds=60)
_KEEP = timedelta(days=1)  # an ended session's row is kept this long


@dataclass(frozen=True)
class Session:
    id: str  # the token's sha256: safe to keep in memory and to key CSRF tokens on
    phone: str
    created_at: datetime


class Sessions:
    def __init__(
        self, engine: Engine, keys: Keys, idle_seconds: int = 900, absolute_seconds: int = 7200
    ) -> None:
        self.engine = engine
        self._signer = TimestampSigner(keys.derive("session-cookie"), salt="session")
        self.idle = timedelta(seconds=idle_seconds)
        self.absolute = timedelta(seconds=absolute_seconds)

    def open(self, phone: str, now: datetime) -> str:
        """A new session for `phone`; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if secrets.randbelow(64) == 0:  # now and then, forget sessions long over
                conn.execute(
                    portal_sessions.delete().where(portal_sessions.c.expires_at < now - _KEEP)
                )
            conn.execute(
                portal_sessions.insert().values(
                    id=token_id(token), phone=phone, created_at=now, last_seen_at=now,
                    expires_at=now + self.absolute,
                )
            )  # fmt: skip
        return self._signer.sign(token).decode()

    def find(self, cookie: str | None, now: datetime) -> Session | None:
        """The live session the cookie names, or None (absent, tampered, unknown, expired, idle
        too long, or logged out)."""
        token = self._token(cookie)
        if token is None:
            return None
        sid = token_id(token)
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(portal_sessions).where(portal_sessions.c.id == sid)
            ).first()
            if row is None or row.revoked_at is not None:
                return None
            last_seen = aware(row.last_seen_at, now)
            if now >= aware(row.expires_at, now) or now - last_seen >= self.idle:
                return None
            if now - last_seen >= _TOUCH_EVERY:
                conn.execute(
                    portal_sessions.update()
                    .where(portal_sessions.c.id == sid)
                    .values(last_seen_at=now)
                )
        return Session(sid, row.phone, aware(row.created_at, now))

    def close(self, cookie: str | None, now: datetime) -> None:
        """Log out: the session is revoked on the server, whatever the browser keeps."""
        token = self._token(cookie)
        if token is None:
            return
        with self.engine.begin() as conn:
            conn.execute(
                portal_sessions.update()
                .where(
                    portal_sessions.c.id == token_id(token), portal_sessions.c.revoked_at.is_(None)
                )
                .values(revoked_at=now)
            )

    def _token(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 200:
            return None
        try:
            return self._signer.unsign(cookie).decode()
        except BadSignature:
            return None
