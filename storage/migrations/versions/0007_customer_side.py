"""The customer's side: preference changes, one-time code challenges, page sessions, rate-limit
counters, the phone-channel API's request log and seen signatures, and an index to find
customers by phone.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invoices_phone", "invoices", ["phone"])
    op.create_table(
        "preference_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("notify", sa.String(8), nullable=False),
        sa.Column("paper_street", sa.Text, nullable=False),
        sa.Column("paper_city", sa.Text, nullable=False),
        sa.Column("paper_county", sa.Text, nullable=False),
        sa.Column("paper_postal_code", sa.String(10), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("cycle_id", sa.String(32)),
        sa.Column("settled_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_preference_changes_customer", "preference_changes", ["customer_id", "state"]
    )
    op.create_index("ix_preference_changes_changed_at", "preference_changes", ["changed_at"])
    op.create_table(
        "otp_challenges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("voided_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_otp_challenges_phone", "otp_challenges", ["phone", "created_at"])
    op.create_index("ix_otp_challenges_expires_at", "otp_challenges", ["expires_at"])
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_portal_sessions_expires_at", "portal_sessions", ["expires_at"])
    op.create_table(
        "rate_limits",
        sa.Column("bucket", sa.String(96), primary_key=True),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rate_limits_window_end", "rate_limits", ["window_end"])
    op.create_table(
        "api_requests",
        sa.Column("caller", sa.String(8), primary_key=True),
        sa.Column("request_id", sa.String(100), primary_key=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_requests_created_at", "api_requests", ["created_at"])
    op.create_table(
        "api_signatures",
        sa.Column("signature", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
