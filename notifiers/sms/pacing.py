"""`SmsNotifier`: the SMS channel's checks and pace, in front of a transport.

It refuses what must never be sent (a recipient that is not E.164, a text that is not one GSM-7
segment: FAILED_PERMANENT without sending), paces the rest with a token bucket (SNS accounts have
a messages-per-second quota) and hands each message to its `SmsTransport`. Texts never reach the
log; numbers only masked.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence

from billing.domain.errors import ConfigurationError
from billing.domain.gsm import GSM7, segments
from billing.domain.notices import NoticeStatus
from notifiers.base import DeliveryResult, Outgoing, ResultCallback
from notifiers.sms.base import SmsTransport, mask_phone

log = logging.getLogger(__name__)

# The pace on SNS when INVOICES_SMS_RATE sets none: SNS's default quota of 10 SMS a second.
DEFAULT_RATE = 10.0

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


class _TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `acquire` waits for one."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # Take the token now, even on credit, so concurrent callers queue up in order.
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)


class SmsNotifier:
    """Sends SMS notices through `transport`, at most `rate_per_second` (math.inf: no limit).

    The rate holds across calls and threads sharing the notifier; `burst` is how many messages
    may go at once after a pause (1: evenly spaced). `clock` (monotonic seconds) and `sleep` are
    injectable for tests.
    """

    def __init__(
        self,
        transport: SmsTransport,
        rate_per_second: float = DEFAULT_RATE,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_second > 0:
            raise ConfigurationError(f"the SMS rate must be positive, not {rate_per_second!r}")
        if burst < 1:
            raise ConfigurationError(f"the SMS burst must be at least 1, not {burst!r}")
        self.transport = transport
        self.rate_per_second = rate_per_second
        self._bucket = (
            None
            if math.isinf(rate_per_second)
            else _TokenBucket(rate_per_second, burst, clock, sleep)
        )

    def send(
        self, messages: Sequence[Outgoing], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """One result per distinct key, in the order of `messages` (a repeated key is sent once),
        each also handed to `on_result` as soon as the transport answers.

        A recipient that is not E.164 (`+` and 8-15 digits) or a text that is not one GSM-7
        segment is refused without sending: "failed-permanent".
        """
        results: list[DeliveryResult] = []
        seen: set[str] = set()
        for message in messages:
            if message.key in seen:
                continue
            seen.add(message.key)
            problem = _refusal(message)
            if problem:
                result = DeliveryResult(message.key, NoticeStatus.FAILED_PERMANENT, error=problem)
            else:
                if self._bucket is not None:
                    self._bucket.acquire()
                result = self.transport.send(message)
            _log_result(message, result)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results


def _refusal(message: Outgoing) -> str:
    if not _E164.fullmatch(message.recipient):
        return "the recipient is not an E.164 phone number (+ and 8-15 digits)"
    if not message.text:
        return "the text is empty"
    encoding, count = segments(message.text)
    if (encoding, count) != (GSM7, 1):
        return f"the text is not one GSM-7 segment ({encoding}, {count} segments)"
    return ""


def _log_result(message: Outgoing, result: DeliveryResult) -> None:
    phone = mask_phone(message.recipient)
    if result.sent:
        log.debug("sms %s to %s sent (%s)", message.key, phone, result.provider_message_id)
    else:
        log.warning("sms %s to %s %s: %s", message.key, phone, result.status, result.error)
