"""Progress of long stages, for people watching: a stage says how much work it found
(`begin`) and reports what it finished (`advance`); what shows it is the caller's choice.

- `LogProgress`: a line in the log every few seconds and at the end (done/total, rate, ETA),
  what an Airflow task log shows;
- `invoices run` shows a rich progress bar per stage with the same two calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("billing.progress")


class Progress(Protocol):
    def begin(self, total: int) -> None:
        """`total` more items of work were found (a stage may announce work part by part)."""

    def advance(self, done: int) -> None:
        """`done` more items are finished."""


class NoProgress:
    def begin(self, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass


NO_PROGRESS = NoProgress()


class LogProgress:
    """Logs `<label>: 400/1000 (40%), 95/s, ETA 6 s` at most every `every` seconds, and once
    when all the work announced is done."""

    def __init__(
        self,
        label: str,
        every: float = 5.0,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.every, self.logger, self.clock = label, every, logger, clock
        self.total = self.done = 0
        self.started = self.clock()
        self.last_line = self.started

    def begin(self, total: int) -> None:
        self.total += total
        if self.done >= self.total:
            self._line()

    def advance(self, done: int) -> None:
        self.done += done
        now = self.clock()
        if self.done >= self.total or now - self.last_line >= self.every:
            self._line(now)

    def _line(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.last_line = now
        self.logger.info("%s", self.describe(now))

    def describe(self, now: float) -> str:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        line = f"{self.label}: {self.done}/{self.total}{share}, {rate:.0f}/s"
        if self.done >= self.total:
            return f"{line}, done in {elapsed:.1f} s"
        if rate > 0:
            return f"{line}, ETA {(self.total - self.done) / rate:.0f} s"
        return line
