"""Putting a cycle's failed notices back in the outbox, for a resend."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from billing.domain.notices import FAILED, NoticeStatus
from storage.ledger import notices


def reset_failed(engine: Engine, cycle_id: str, channels: tuple[str, ...]) -> int:
    """Put the cycle's failed notices on `channels` back to pending; how many. Sent ones stay
    sent: a resend never sends a notice twice."""
    with engine.begin() as conn:
        return conn.execute(
            notices.update()
            .where(
                notices.c.cycle_id == cycle_id,
                notices.c.channel.in_(channels),
                notices.c.status.in_(FAILED),
            )
            .values(status=NoticeStatus.PENDING, updated_at=datetime.now(UTC))
        ).rowcount
