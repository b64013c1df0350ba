"""What every channel takes and gives back: one `Outgoing` message in, one `DeliveryResult` out.

A channel's `send(messages)` returns exactly one result per distinct idempotency key, in the order
of `messages`. Statuses (`billing.domain.notices.NoticeStatus`):

    SENT               the provider accepted the message
    FAILED_RETRYABLE   not delivered this time (4xx, timeout, connection lost, server unreachable):
                       the notice stays pending and a later run tries again
    FAILED_PERMANENT   never retry (5xx, an unusable recipient)

A message that can never be sent is a `PermanentDeliveryError` where it is built; a bad sender
or server setting is a `ConfigurationError`, raised rather than reported per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from billing.domain.notices import NoticeStatus

DELIVERY_STATUSES = (
    NoticeStatus.SENT,
    NoticeStatus.FAILED_RETRYABLE,
    NoticeStatus.FAILED_PERMANENT,
)


@dataclass(frozen=True)
class Outgoing:
    """One message to send, built from the outbox."""

    key: str  # idempotency key, e.g. "OR00000001:email"
    recipient: str  # e-mail address (or E.164 phone for SMS)
    subject: str  # empty for SMS
    text: str
    html: str = ""
    attachment: tuple[str, bytes] | None = None  # (filename, PDF bytes)

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks: keep the address and the body out of them.
        return f"Outgoing(key={self.key!r})"


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome for one key. `error` holds the server's reply or the exception for a failure,
    never the recipient address. `status` may be given as its string ("sent", ...)."""

    key: str
    status: NoticeStatus
    provider_message_id: str = ""
    error: str = ""

    def __post_init__(self) -> None:
        if self.status not in DELIVERY_STATUSES:
            values = tuple(str(status) for status in DELIVERY_STATUSES)
            raise ValueError(f"status must be one of {values}, not {self.status!r}")
        object.__setattr__(self, "status", NoticeStatus(self.status))

    @property
    def sent(self) -> bool:
        return self.status == NoticeStatus.SENT


# Called with each key's final result as soon as it is known (before `send` returns), so the
# caller can record it at once: a process killed mid-batch then re-sends only what was in flight.
ResultCallback = Callable[[DeliveryResult], None]


class Notifier(Protocol):
    """A delivery channel: sends a batch and accounts for every key."""

    def send(
        self, messages: Sequence[Outgoing], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """One result per distinct key, in the order of `messages`; each also handed to
        `on_result` the moment it is final."""
