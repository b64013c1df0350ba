"""The words of the notice outbox: channels and the states a notice moves through.

    pending ──claim──▶ sending ──▶ sent
       ▲                  │   └──▶ failed-permanent   (never retried; a resend puts it back)
       └── resend ────────┴──────▶ failed-retryable   (claimed again by the next notify run)

A notice "sending" for longer than its lease belongs to a run that died: the next run claims it.
Paper notices go from pending to sent when the invoice is in a print batch.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """How a customer hears of an invoice."""

    EMAIL = "email"
    SMS = "sms"
    PAPER = "paper"


class NoticeStatus(StrEnum):
    """Where a notice is in the outbox (the ledger's `notices.status`)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED_RETRYABLE = "failed-retryable"
    FAILED_PERMANENT = "failed-permanent"


# The channels a notify run sends (paper goes to the print batch instead).
MESSAGE_CHANNELS = (Channel.EMAIL, Channel.SMS)
# States a notify run may claim: new, abandoned by a dead run (lease expired), or to be retried.
CLAIMABLE = (NoticeStatus.PENDING, NoticeStatus.SENDING, NoticeStatus.FAILED_RETRYABLE)
# States a resend puts back to pending.
FAILED = (NoticeStatus.FAILED_PERMANENT, NoticeStatus.FAILED_RETRYABLE)
# How the run report counts each state: a retryable failure is still pending delivery.
REPORTED_AS = {
    NoticeStatus.SENT: "sent",
    NoticeStatus.FAILED_PERMANENT: "failed",
    NoticeStatus.PENDING: "pending",
    NoticeStatus.SENDING: "pending",
    NoticeStatus.FAILED_RETRYABLE: "pending",
}
