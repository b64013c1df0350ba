"""Time on the customer's side: one clock, replaceable in tests (code expiry, session timeouts,
rate-limit windows), and the one rule for timestamps read back from the ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime, like: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=like.tzinfo or UTC)
