"""The one rule for timestamps: the product writes every moment in UTC, and SQLite hands them
back without their zone, so a moment without one is UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """`moment` with its zone: its own, or UTC when it has none (as read back from SQLite, or
    typed without one)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
