"""Opening the ledger: a database that cannot be reached is a retryable LedgerError."""

from __future__ import annotations

import pytest

from billing.domain.errors import LedgerError
from storage.ledger import open_ledger


def test_an_unreachable_database_is_a_retryable_ledger_error_without_the_password():
    url = "postgresql+psycopg://invoices:s3cret-pw@127.0.0.1:1/ledger"  # nothing listens on 1

    with pytest.raises(LedgerError) as failed:
        open_ledger(url)

    message = str(failed.value)
    assert failed.value.retryable
    assert "postgresql+psycopg://invoices:***@127.0.0.1:1/ledger" in message
    assert "s3cret-pw" not in message
