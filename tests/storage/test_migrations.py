"""The tables the code uses are exactly the tables the migrations build, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.ledger import VERSION_TABLE, metadata, open_ledger


def test_the_migrations_build_exactly_the_tables_the_code_declares(ledger_url):
    engine = open_ledger(ledger_url)  # runs every migration on a new database
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": lambda name, kind, _parent: name != VERSION_TABLE,
            },
        )
        differences = compare_metadata(context, metadata)
    assert differences == []
