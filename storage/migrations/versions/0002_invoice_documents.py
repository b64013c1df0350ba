"""Rendered invoice documents: where each PDF is archived, its size, sha256 and template version.

Kept apart from `invoices` so an issued invoice row is never updated: archiving only inserts.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_documents",
        sa.Column("number", sa.String(24), sa.ForeignKey("invoices.number"), primary_key=True),
        sa.Column("cycle_id", sa.String(32), nullable=False),
        sa.Column("template_version", sa.String(16), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("version_id", sa.String(1024)),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
    )
    op.create_index("ix_invoice_documents_cycle", "invoice_documents", ["cycle_id"])
