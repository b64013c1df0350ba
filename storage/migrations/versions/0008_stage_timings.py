"""Stage timings: how long each stage of a run took, per chunk, and how many items it handled.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_timings",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("stage", sa.String(32), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stage_timings")
