"""Fixed-window rate limits shared by every page worker: counters in the ledger database (the
embedded default) or in Redis (`INVOICES_REDIS_URL`). A bucket is a keyed hash of what it counts
(a phone number, a client address), so neither store ever holds the number or the address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from storage.ledger import rate_limits


@dataclass(frozen=True)
class Limit:
    name: str  # e.g. "code-phone"
    hits: int  # allowed per window
    window_seconds: int


class Limiter(Protocol):
    def hit(self, bucket: str, limit: Limit, now: datetime) -> bool:
        """Count one hit in `bucket`; False when the window already holds `limit.hits`."""


class LedgerLimiter:
    """Counters in the ledger database: one atomic upsert per hit (SQLite and PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = insert

    def hit(self, bucket: str, limit: Limit, now: datetime) -> bool:
        window = int(now.timestamp()) // limit.window_seconds
        key = f"{bucket}:{window}"
        window_end = datetime.fromtimestamp((window + 1) * limit.window_seconds, now.tzinfo)
        statement = self._insert(rate_limits).values(bucket=key, hits=1, window_end=window_end)
        statement = statement.on_conflict_do_update(
            index_elements=["bucket"], set_={"hits": rate_limits.c.hits + 1}
        ).returning(rate_limits.c.hits)
        with self.engine.begin() as conn:
            hits = conn.execute(statement).scalar_one()
            if hits == 1 and window % 64 == 0:  # now and then, forget windows long gone
                conn.execute(
                    rate_limits.delete().where(rate_limits.c.window_end < now - timedelta(days=1))
                )
        return hits <= limit.hits


class RedisLimiter:
    """Counters in Redis: INCR and EXPIRE in one transaction per hit."""

    def __init__(self, client) -> None:
        self.client = client

    def hit(self, bucket: str, limit: Limit, now: datetime) -> bool:
        window = int(now.timestamp()) // limit.window_seconds
        key = f"invoices:rate:{bucket}:{window}"
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, limit.window_seconds * 2)
        hits, _ = pipe.execute()
        return int(hits) <= limit.hits
