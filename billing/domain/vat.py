"""Romanian VAT rates by the date they came into force (Law 141/2025 changed them on 2025-08-01)."""

from __future__ import annotations

import functools
from datetime import date
from decimal import Decimal

# (first day in force, rates in force from that day), oldest first.
RATE_SCHEDULE: tuple[tuple[date, frozenset[Decimal]], ...] = (
    (date(2017, 1, 1), frozenset(Decimal(r) for r in ("19", "9", "5", "0"))),
    (date(2025, 8, 1), frozenset(Decimal(r) for r in ("21", "11", "0"))),
)


def rates_in_force(on: date) -> frozenset[Decimal]:
    """The VAT rates (percent) in force on one day."""
    current: frozenset[Decimal] = frozenset()
    for since, rates in RATE_SCHEDULE:
        if on >= since:
            current = rates
    if not current:
        raise ValueError(f"no VAT rates known for {on.isoformat()}")
    return current


@functools.lru_cache(maxsize=1024)
def rates_in_period(start: date, end: date) -> frozenset[Decimal]:
    """Every rate in force on some day of [start, end]: a cycle that straddles a change has both."""
    rates = set(rates_in_force(start))
    for since, in_force in RATE_SCHEDULE:
        if start < since <= end:
            rates |= in_force
    return frozenset(rates)
