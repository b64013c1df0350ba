"""The e-Factura reporting deadline: an invoice reaches ANAF within 5 working days of its issue
date (GEO 89/2025, since 2026-01-01), working days being Monday to Friday except Romanian public
holidays (the `holidays` package's Romania, which moves Orthodox Easter and Pentecost each year).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import holidays

REPORTING_DAYS = 5  # working days after the issue date
WARN_DAYS = 1  # working days left at which an invoice is listed as close to its deadline


@cache
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.Romania(years=year))


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _public_holidays(day.year)


def add_working_days(start: date, days: int) -> date:
    """The `days`-th working day after `start` (`start` itself not counted)."""
    day = start
    while days > 0:
        day += timedelta(days=1)
        days -= is_working_day(day)
    return day


def reporting_deadline(issue_date: date) -> date:
    """The last day an invoice issued on `issue_date` may reach ANAF."""
    return add_working_days(issue_date, REPORTING_DAYS)


def working_days_left(deadline: date, today: date) -> int:
    """Working days from `today` (not counted) to `deadline` (counted): 0 on the deadline
    itself and on a non-working day just before it, negative once it has passed."""
    if today > deadline:
        return -sum(
            1
            for n in range((today - deadline).days)
            if is_working_day(deadline + timedelta(days=n + 1))
        )
    return sum(
        1 for n in range((deadline - today).days) if is_working_day(today + timedelta(days=n + 1))
    )
