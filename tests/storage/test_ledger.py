"""Opening the ledger: a database that cannot be reached is a retryable LedgerError."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing.domain.errors import LedgerError
from billing.domain.notices import NoticeStatus
from storage.ledger import ExactDecimal, Money, insert_rows, open_ledger


def test_an_unreachable_database_is_a_retryable_ledger_error_without_the_password():
    url = "postgresql+psycopg://invoices:s3cret-pw@127.0.0.1:1/ledger"  # nothing listens on 1

    with pytest.raises(LedgerError) as failed:
        open_ledger(url)

    message = str(failed.value)
    assert failed.value.retryable
    assert "postgresql+psycopg://invoices:***@127.0.0.1:1/ledger" in message
    assert "s3cret-pw" not in message


def test_rows_inserted_in_bulk_read_back_as_sqlalchemy_inserts_them(ledger_url):
    """insert_rows (COPY on PostgreSQL, one executemany on SQLite) applies each column's own
    bind processing: the rows read back equal those of SQLAlchemy's executemany."""
    engine = open_ledger(ledger_url)
    scratch = sa.MetaData()

    def table(name: str) -> sa.Table:
        return sa.Table(
            name, scratch,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("amount", Money, nullable=False),
            sa.Column("quantity", ExactDecimal, nullable=True),
            sa.Column("day", sa.Date, nullable=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("flag", sa.Boolean, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("text", sa.String(200), nullable=False),
        )  # fmt: skip

    bulk, plain = table("bulk_rows"), table("plain_rows")
    at = datetime(2026, 11, 1, 21, 30, 5, 123456, tzinfo=UTC)
    rows = [
        {"text": text, "id": n, "amount": Decimal(amount), "quantity": quantity, "day": day,
         "at": at, "flag": n % 2 == 0, "status": NoticeStatus.PENDING}
        for n, (text, amount, quantity, day) in enumerate([
            ("Abonament Fibră 1 Gbps, ș ț", "-12.30", Decimal("1.2500"), date(2026, 10, 31)),
            ('tab\tquote" back\\slash', "0.00", None, None),
            ("", "99999999.99", Decimal("0.0450"), date(2026, 2, 28)),
        ])
    ]  # fmt: skip
    scratch.create_all(engine)
    try:
        with engine.begin() as conn:
            insert_rows(conn, bulk, rows)
            conn.execute(plain.insert(), rows)
            read = [conn.execute(sa.select(t).order_by(t.c.id)).all() for t in (bulk, plain)]
        assert read[0] == read[1]
        assert [r.amount for r in read[0]] == [
            Decimal("-12.30"),
            Decimal("0.00"),
            Decimal("99999999.99"),
        ]
        with engine.connect() as conn, pytest.raises(KeyError, match="no column nope"):
            insert_rows(conn, bulk, [{"id": 9, "nope": 1}])
    finally:
        scratch.drop_all(engine)
