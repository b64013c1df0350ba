"""Which cycle a run bills: from its `cycle_id` param, or from the period its schedule gives it."""

from __future__ import annotations

from datetime import date

from billing.errors import ConfigurationError


def resolve_cycle_id(param: str | None, interval_end: date | None) -> str:
    """The cycle id of a run: the param when given (manual runs), else the month in which the
    billed period ends' next day falls - a run billing October is cycle YYYY-11."""
    if param:
        return param.strip()
    if interval_end is None:
        raise ConfigurationError("a manual run needs the cycle_id param (e.g. 2026-11)")
    return f"{interval_end.year:04d}-{interval_end.month:02d}"
