"""The manifest chain: each cycle manifest, in the order written, with its predecessor's sha256.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manifests",
        sa.Column("cycle_id", sa.String(32), sa.ForeignKey("cycles.cycle_id"), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("previous_sha256", sa.String(64)),
        sa.Column("version_id", sa.String(1024)),
        sa.Column("invoices", sa.Integer, nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )
