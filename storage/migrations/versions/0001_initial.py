"""The first ledger schema: cycles, series counters, invoices, VAT summaries, lines, runs.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from storage.ledger import ExactDecimal, Money

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("cycle_id", sa.String(32), primary_key=True),
        sa.Column("series", sa.String(10), nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "series_counters",
        sa.Column("series", sa.String(10), primary_key=True),
        sa.Column("last_number", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "invoices",
        sa.Column("number", sa.String(24), primary_key=True),
        sa.Column("series", sa.String(10), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("cycle_id", sa.String(32), sa.ForeignKey("cycles.cycle_id"), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("customer_name", sa.Text, nullable=False),
        sa.Column("customer_tax_id", sa.String(16), nullable=False),
        sa.Column("street", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("county", sa.Text, nullable=False),
        sa.Column("postal_code", sa.String(10), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("notify", sa.String(8), nullable=False),
        sa.Column("paper_street", sa.Text, nullable=False),
        sa.Column("paper_city", sa.Text, nullable=False),
        sa.Column("paper_county", sa.Text, nullable=False),
        sa.Column("paper_postal_code", sa.String(10), nullable=False),
        sa.Column("contact_flags", sa.String(64), nullable=False),
        sa.Column("net_total", Money, nullable=False),
        sa.Column("vat_total", Money, nullable=False),
        sa.Column("total", Money, nullable=False),
        sa.Column("line_count", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.UniqueConstraint("series", "seq", name="uq_invoices_series_seq"),
        sa.UniqueConstraint("cycle_id", "customer_id", name="uq_invoices_cycle_customer"),
    )
    op.create_index("ix_invoices_customer_issue", "invoices", ["customer_id", "issue_date"])
    op.create_table(
        "invoice_vat",
        sa.Column("number", sa.String(24), sa.ForeignKey("invoices.number"), primary_key=True),
        sa.Column("rate", ExactDecimal, primary_key=True),
        sa.Column("base", Money, nullable=False),
        sa.Column("vat", Money, nullable=False),
    )
    op.create_table(
        "invoice_lines",
        sa.Column("number", sa.String(24), sa.ForeignKey("invoices.number"), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("quantity", ExactDecimal, nullable=False),
        sa.Column("unit_price", ExactDecimal, nullable=False),
        sa.Column("net", Money, nullable=False),
        sa.Column("vat_rate", ExactDecimal, nullable=False),
        sa.Column("service_start", sa.Date),
        sa.Column("service_end", sa.Date),
        sa.Column("source_row", sa.Integer, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("cycle_id", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("report", sa.Text),
    )
