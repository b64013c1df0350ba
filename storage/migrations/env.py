"""Alembic environment for the ledger: always run on a connection handed in by `migrate()`."""

from alembic import context

from storage.ledger import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
