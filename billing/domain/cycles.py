"""Bill-cycle days, and which cycle (and billed period) a run covers.

A bill cycle runs on one day of the month (the 1st, 8th, 15th or 22nd, ...) and bills the month
before it: the run of 8 November bills 8 October to 7 November. In Airflow that is a
`CronDataIntervalTimetable` of `0 0 <day> * *` in Europe/Bucharest, whose data interval is
exactly the billed period, from local midnight to local midnight. Interval bounds reach the tasks
in UTC; they are read back in Bucharest time, so a period that crosses a change of summer time
(as October does) still starts and ends on the right days.

Cycle ids: the cycle of the 1st is named by its month (`2026-11`, billing October); the cycle of
any other day is named by its date (`2026-11-08`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from billing.domain.errors import ConfigurationError, InputError
from billing.domain.model import Cycle

TIMEZONE = "Europe/Bucharest"
DAYS_VARIABLE = "INVOICES_BILL_CYCLE_DAYS"
DEFAULT_DAYS = (1,)
LAST_DAY = 28  # every month has it


def bill_cycle_days(env: Mapping[str, str]) -> tuple[int, ...]:
    """The bill-cycle days `env` configures (`INVOICES_BILL_CYCLE_DAYS`), sorted."""
    return parse_bill_cycle_days(env.get(DAYS_VARIABLE, ""))


def parse_bill_cycle_days(text: str) -> tuple[int, ...]:
    """Bill-cycle days from a list such as "1,8,15,22", sorted; empty text: the 1st only."""
    text = text.strip()
    if not text:
        return DEFAULT_DAYS
    days = set()
    for part in text.split(","):
        try:
            day = int(part.strip())
        except ValueError:
            raise ConfigurationError(
                f"{DAYS_VARIABLE} must list days of the month such as 1,8,15,22, not {text!r}"
            ) from None
        if not 1 <= day <= LAST_DAY:
            raise ConfigurationError(
                f"{DAYS_VARIABLE}: {day} is not a day every month has (1 to {LAST_DAY})"
            )
        days.add(day)
    return tuple(sorted(days))


def dag_id_for(day: int) -> str:
    """The DAG of a bill-cycle day: `invoice_cycle` for the 1st, `invoice_cycle_d08` for the 8th."""
    return "invoice_cycle" if day == 1 else f"invoice_cycle_d{day:02d}"


def cron_for(day: int) -> str:
    """Local midnight of the bill-cycle day, monthly."""
    return f"0 0 {day} * *"


def cycle_id_for(bill_day: date) -> str:
    """`YYYY-MM` for the cycle of the 1st, `YYYY-MM-DD` for any other bill-cycle day."""
    month = f"{bill_day.year:04d}-{bill_day.month:02d}"
    return month if bill_day.day == 1 else f"{month}-{bill_day.day:02d}"


@dataclass(frozen=True)
class BilledPeriod:
    """What one scheduled or backfill run bills: its cycle and the days of its period."""

    cycle_id: str
    start: date  # first day billed
    end: date  # last day billed, inclusive; the bill-cycle day is the day after


def billed_period(
    interval_start: datetime, interval_end: datetime, timezone: str = TIMEZONE
) -> BilledPeriod:
    """The period a data interval bills: local midnight to local midnight in `timezone`."""
    zone = ZoneInfo(timezone)
    if interval_start.tzinfo is None or interval_end.tzinfo is None:
        raise ConfigurationError("a data interval must carry its time zone")
    start, end = interval_start.astimezone(zone), interval_end.astimezone(zone)
    for bound in (start, end):
        if bound.timetz().replace(tzinfo=None) != time(0, 0):
            raise ConfigurationError(
                f"the data interval {interval_start.isoformat()} - {interval_end.isoformat()} "
                f"does not run from midnight to midnight in {timezone}: it is not a bill cycle"
            )
    if end <= start:
        raise ConfigurationError(f"empty data interval ending {interval_end.isoformat()}")
    bill_day = end.date()
    return BilledPeriod(
        cycle_id=cycle_id_for(bill_day),
        start=start.date(),
        end=bill_day - timedelta(days=1),
    )


def resolve_cycle(
    param: str | None, interval: tuple[datetime, datetime] | None
) -> tuple[str, BilledPeriod | None]:
    """The cycle a run bills, and the period when the run has a data interval.

    Manual runs have no interval: the `cycle_id` param names the cycle. Scheduled and backfill
    runs bill their data interval; a `cycle_id` param that names another cycle is refused, so a
    backfill cannot bill one export under several periods.
    """
    wanted = (param or "").strip()
    if interval is None:
        if not wanted:
            raise ConfigurationError("a manual run needs the cycle_id param (e.g. 2026-11)")
        return wanted, None
    period = billed_period(*interval)
    if wanted and wanted != period.cycle_id:
        raise ConfigurationError(
            f"the cycle_id param {wanted!r} is not the cycle this run's data interval bills "
            f"({period.cycle_id}, {period.start}..{period.end}); leave it empty"
        )
    return period.cycle_id, period


def check_period(cycle: Cycle, period: BilledPeriod) -> None:
    """Refuse an export whose `cycle.json` bills other days than the run's data interval."""
    if (cycle.period_start, cycle.period_end) != (period.start, period.end):
        raise InputError(
            f"{cycle.cycle_id}/cycle.json",
            f"period_start..period_end is {cycle.period_start}..{cycle.period_end}, but the run "
            f"bills {period.start}..{period.end} (its data interval in {TIMEZONE})",
        )
