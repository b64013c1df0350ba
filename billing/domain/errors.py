"""The product's exceptions: one tree, and whether trying again can help.

    InvoicePipelineError              base of every error raised on purpose; `.retryable`
    ├── ConfigurationError       no   a setting is missing or malformed; fix the environment
    ├── InputError               no   a file of the export is missing or unusable; names the file
    ├── ConflictError            no   doing it would contradict what is already recorded
    │   ├── CycleConflictError        a cycle was re-staged with other cycle.json contents
    │   └── ArchiveConflictError      a write-once key already holds other bytes (an ArchiveError)
    ├── RenderError              no   an invoice cannot be printed as it is
    ├── LedgerError              yes  the ledger database could not be reached or failed
    ├── ArchiveError             yes  the archive (S3, folder) failed an operation
    └── DeliveryError                 a notice could not be delivered
        ├── RetryableDeliveryError   yes  try again later (4xx, timeouts, throttling)
        └── PermanentDeliveryError   no   never retry (5xx, invalid recipient)
            └── UnsendableNoticeError     the notice cannot even be written for this invoice

Orchestrators retry what is `retryable` and fail at once on the rest (a DAG task raises
Airflow's fail-now exception for them; the CLI exits 2). Backends map their libraries' errors
(botocore, aiosmtplib, SQLAlchemy) into this tree at one point each, so nothing else sees them.

Problems with single rows are not exceptions: validation reports them as `Problem` records and
the row goes to the quarantine report, so one bad row never stops a cycle.
"""

from __future__ import annotations


class InvoicePipelineError(Exception):
    """Base of every error this product raises on purpose."""

    retryable = False  # whether the same call may succeed later


class ConfigurationError(InvoicePipelineError):
    """A setting is missing or malformed."""


class InputError(InvoicePipelineError):
    """A whole input (a file of the cycle export) is missing or unusable."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file


class ConflictError(InvoicePipelineError):
    """Doing this would contradict what the ledger or the archive already holds."""


class CycleConflictError(ConflictError):
    """A cycle was staged again with cycle.json contents that differ from the first staging."""


class RenderError(InvoicePipelineError):
    """The invoice cannot be printed as it is: a character the font lacks, a field too long."""


class LedgerError(InvoicePipelineError):
    """The ledger database could not be reached, or failed an operation."""

    retryable = True


class ArchiveError(InvoicePipelineError):
    """The archive refused or failed an operation."""

    retryable = True


class ArchiveConflictError(ConflictError, ArchiveError):
    """A write-once key already holds other bytes: archived documents are never overwritten."""

    retryable = False


class DeliveryError(InvoicePipelineError):
    """A notice could not be delivered."""


class RetryableDeliveryError(DeliveryError):
    """Delivery failed for a reason that may pass: retry with backoff."""

    retryable = True


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for good: record it, never retry."""


class UnsendableNoticeError(PermanentDeliveryError):
    """The notice of this invoice cannot be written (no text in its language or currency, no
    room in one SMS), so it can never be sent: the notify step records it failed for good."""
