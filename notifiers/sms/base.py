"""What the SMS notifier hands each message to: an `SmsTransport`, and how numbers are logged.

A transport never raises for a message it could not deliver: throttling, 5xx answers and lost
connections are FAILED_RETRYABLE; a message the provider rejects (a phone number it cannot use)
is FAILED_PERMANENT. Phone numbers never reach the log unmasked ("+40******456").
"""

from __future__ import annotations

from typing import Protocol

from notifiers.base import DeliveryResult, Outgoing


def mask_phone(number: str) -> str:
    """`number` as it may appear in a log: "+40722000456" -> "+40******456"; anything shorter
    than 8 digits (or not a phone number) is masked entirely."""
    digits = number.removeprefix("+")
    if not (digits.isascii() and digits.isdigit()) or len(digits) < 8:
        return "*" * len(number)
    return f"+{digits[:2]}{'*' * (len(digits) - 5)}{digits[-3:]}"


class SmsTransport(Protocol):
    """Hands one SMS to a provider; reports failures as results, never as exceptions."""

    def send(self, message: Outgoing) -> DeliveryResult: ...
