"""e-Factura: the UBL XML of each invoice in the archive, its state with ANAF and its upload,
and ANAF's OAuth2 tokens.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "efactura_documents",
        sa.Column("number", sa.String(24), sa.ForeignKey("invoices.number"), primary_key=True),
        sa.Column("cycle_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("version_id", sa.String(1024)),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("recovered", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True)),
        sa.Column("upload_started_at", sa.DateTime(timezone=True)),
        sa.Column("upload_index", sa.String(32)),
        sa.Column("uploaded_at", sa.DateTime(timezone=True)),
        sa.Column("download_id", sa.String(32)),
        sa.Column("response_key", sa.Text),
        sa.Column("response_sha256", sa.String(64)),
        sa.Column("response_version_id", sa.String(1024)),
    )
    op.create_index(
        "ix_efactura_documents_cycle_state", "efactura_documents", ["cycle_id", "state"]
    )
    op.create_index(
        "ix_efactura_documents_upload_index", "efactura_documents", ["upload_index"], unique=True
    )
    op.create_table(
        "efactura_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("access_token", sa.Text, nullable=False),
        sa.Column("refresh_token", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("efactura_tokens")
    op.drop_index("ix_efactura_documents_upload_index", "efactura_documents")
    op.drop_index("ix_efactura_documents_cycle_state", "efactura_documents")
    op.drop_table("efactura_documents")
