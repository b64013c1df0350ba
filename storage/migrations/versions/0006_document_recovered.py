"""Invoice documents: whether the run that recorded the PDF found it already archived (uploaded
by a run that crashed before recording it) instead of writing it.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoice_documents") as batch:
        batch.add_column(
            sa.Column("recovered", sa.Boolean, nullable=False, server_default=sa.false())
        )
