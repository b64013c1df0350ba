"""The product's exceptions.

    InvoicePipelineError
    ├── ConfigurationError      a setting is missing or malformed; fix the environment
    ├── InputError              a whole input file is missing or unusable; names the file
    ├── LedgerError             the ledger refused an operation
    │   └── CycleConflictError  a cycle was re-staged with different cycle.json contents
    ├── ArchiveError            the archive refused or failed an operation
    │   └── ArchiveConflictError  a write-once key already holds different bytes
    └── DeliveryError           a notice could not be delivered
        ├── RetryableDeliveryError   try again later (4xx, timeouts, throttling)
        └── PermanentDeliveryError   never retry (5xx, invalid recipient)

Problems with single rows are not exceptions: validation reports them as `Problem` records and
the row goes to the quarantine report, so one bad row never stops a cycle.
"""

from __future__ import annotations


class InvoicePipelineError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigurationError(InvoicePipelineError):
    """A setting is missing or malformed."""


class InputError(InvoicePipelineError):
    """A whole input (a file of the cycle export) is missing or unusable."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file


class LedgerError(InvoicePipelineError):
    """The ledger refused an operation."""


class CycleConflictError(LedgerError):
    """A cycle was staged again with cycle.json contents that differ from the first staging."""


class ArchiveError(InvoicePipelineError):
    """The archive refused or failed an operation."""


class ArchiveConflictError(ArchiveError):
    """A write-once key already holds other bytes: archived documents are never overwritten."""


class DeliveryError(InvoicePipelineError):
    """A notice could not be delivered."""


class RetryableDeliveryError(DeliveryError):
    """Delivery failed for a reason that may pass: retry with backoff."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for good: record it, never retry."""
