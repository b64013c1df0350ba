"""The ledger: issued invoices, their lines and VAT summaries, series counters, runs.

SQLAlchemy Core over SQLite (embedded default) or PostgreSQL (production). The schema is created
or migrated (alembic, `storage/migrations/`) the first time a process opens the ledger; concurrent
first openings are serialised by a lock, so many workers can start at once. A database that
cannot be reached then is LedgerError (retryable), naming the URL without its password.

Money columns hold whole bani (BIGINT), so sums are exact in both databases; quantities, unit
prices and rates keep their exact decimal text.
"""

from __future__ import annotations

import os
import threading
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.types import TypeDecorator

from billing.domain.errors import LedgerError

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "ledger_schema_version"
_MIGRATION_LOCK_ID = 0x1F0_1CE5  # pg_advisory_xact_lock key for schema changes
_CHAIN_LOCK_ID = 0x1F0_C4A1  # pg_advisory_xact_lock key for appending to the manifest chain


class Money(TypeDecorator):
    """A Decimal amount with at most two decimals, stored as whole bani."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        bani = Decimal(value).scaleb(2)
        if bani != bani.to_integral_value():
            raise ValueError(f"{value} has more than two decimals")
        return int(bani)

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(int(value)).scaleb(-2)


class ExactDecimal(TypeDecorator):
    """A Decimal kept as its exact text (quantities, unit prices, VAT rates)."""

    impl = sa.String(40)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else str(value)

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)


metadata = sa.MetaData()

cycles = sa.Table(
    "cycles",
    metadata,
    sa.Column("cycle_id", sa.String(32), primary_key=True),
    sa.Column("series", sa.String(10), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
)

series_counters = sa.Table(
    "series_counters",
    metadata,
    sa.Column("series", sa.String(10), primary_key=True),
    sa.Column("last_number", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

invoices = sa.Table(
    "invoices",
    metadata,
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
    sa.Index("ix_invoices_customer_issue", "customer_id", "issue_date"),
    sa.Index("ix_invoices_phone", "phone"),  # the self-service page finds customers by phone
)

invoice_vat = sa.Table(
    "invoice_vat",
    metadata,
    sa.Column("number", sa.String(24), sa.ForeignKey("invoices.number"), primary_key=True),
    sa.Column("rate", ExactDecimal, primary_key=True),
    sa.Column("base", Money, nullable=False),
    sa.Column("vat", Money, nullable=False),
)

invoice_lines = sa.Table(
    "invoice_lines",
    metadata,
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

invoice_documents = sa.Table(
    "invoice_documents",
    metadata,
    sa.Column("number", sa.String(24), sa.ForeignKey("invoices.number"), primary_key=True),
    sa.Column("cycle_id", sa.String(32), nullable=False),
    sa.Column("template_version", sa.String(16), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("version_id", sa.String(1024)),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    # True: the run found the PDF already in the archive (uploaded before a crash) and only
    # recorded it; False: the run wrote it.
    sa.Column("recovered", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_invoice_documents_cycle", "cycle_id"),
)

# The e-Factura XML of each invoice (contract 7) and where it stands with ANAF. state: pending
# (made and archived, not uploaded yet), invalid (fails validation: never uploaded), uploaded,
# accepted, rejected; `state_at` is when it entered that state, `findings` the JSON list of the
# rules it breaks (validation) or of ANAF's errors (rejection).
efactura_documents = sa.Table(
    "efactura_documents",
    metadata,
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
    # the upload: started (recorded before the request, so a reply that never came is looked
    # for in ANAF's message list before any new upload), its index, ANAF's download id and
    # the response ZIP archived beside the XML
    sa.Column("upload_started_at", sa.DateTime(timezone=True)),
    sa.Column("upload_index", sa.String(32)),
    sa.Column("uploaded_at", sa.DateTime(timezone=True)),
    sa.Column("download_id", sa.String(32)),
    sa.Column("response_key", sa.Text),
    sa.Column("response_sha256", sa.String(64)),
    sa.Column("response_version_id", sa.String(1024)),
    sa.Index("ix_efactura_documents_cycle_state", "cycle_id", "state"),
    sa.Index("ix_efactura_documents_upload_index", "upload_index", unique=True),
)

# ANAF's OAuth2 tokens as last refreshed (one row): a refresh may replace the refresh token, and
# every process must start from the newest.
efactura_tokens = sa.Table(
    "efactura_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("access_token", sa.Text, nullable=False),
    sa.Column("refresh_token", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
)

manifests = sa.Table(
    "manifests",
    metadata,
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

notices = sa.Table(
    "notices",
    metadata,
    sa.Column("key", sa.String(40), primary_key=True),  # idempotency key: "<number>:<channel>"
    sa.Column("number", sa.String(24), sa.ForeignKey("invoices.number"), nullable=False),
    sa.Column("cycle_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False),
    # pending, sending, sent, failed-retryable, failed-permanent
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("provider_message_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("run_id", sa.String(250)),
    # the notify run holding the notice while it is "sending" (see billing.stages.notifying)
    sa.Column("claim_token", sa.String(64)),
    sa.Index("ix_notices_cycle_status", "cycle_id", "channel", "status"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("cycle_id", sa.String(32), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("report", sa.Text),
)

# How long each stage of a run took, per part (a chunk's number; 0 for a stage run once), and
# how many items it handled: the run report's timings. A retried part replaces its row.
stage_timings = sa.Table(
    "stage_timings",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("stage", sa.String(32), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("items", sa.Integer, nullable=False),
)

# The customer's side (billing.accounts, the self-service page and its phone channels).

# Preference changes customers made (web page, 411 line, *100# menu, SMS), newest last. Each row
# holds the whole preference after the change. The newest open change of a customer overrides
# the billing export at issuing until an export reflects it (see storage.preferences).
preference_changes = sa.Table(
    "preference_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(8), nullable=False),  # web, ivr, ussd, sms
    sa.Column("delivery", sa.String(16), nullable=False),
    sa.Column("notify", sa.String(8), nullable=False),
    sa.Column("paper_street", sa.Text, nullable=False),
    sa.Column("paper_city", sa.Text, nullable=False),
    sa.Column("paper_county", sa.Text, nullable=False),
    sa.Column("paper_postal_code", sa.String(10), nullable=False),
    # open (not yet seen by a cycle), applied (a cycle used it over the export), reflected (an
    # export carried it: no longer applied), superseded (a newer change replaced it)
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("cycle_id", sa.String(32)),  # the cycle that applied it first, or reflected it
    sa.Column("settled_at", sa.DateTime(timezone=True)),
    sa.Index("ix_preference_changes_customer", "customer_id", "state"),
    sa.Index("ix_preference_changes_changed_at", "changed_at"),
)

# One-time code challenges. `id` is the sha256 of the opaque token held by the browser (or of a
# random token for a code asked by SMS); the code itself is kept only as a keyed hash.
otp_challenges = sa.Table(
    "otp_challenges",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("phone", sa.String(16), nullable=False),  # E.164
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("origin", sa.String(8), nullable=False),  # web, sms
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("voided_at", sa.DateTime(timezone=True)),
    sa.Index("ix_otp_challenges_phone", "phone", "created_at"),
    sa.Index("ix_otp_challenges_expires_at", "expires_at"),
)

# Page sessions: `id` is the sha256 of the session token in the signed cookie, so a copy of the
# database grants no session.
portal_sessions = sa.Table(
    "portal_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("phone", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Index("ix_portal_sessions_expires_at", "expires_at"),
)

# Fixed-window counters of the rate limits (per phone number, per client address), shared by
# every page worker; `bucket` is a keyed hash, never the number or the address itself.
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("bucket", sa.String(96), primary_key=True),
    sa.Column("hits", sa.Integer, nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_rate_limits_window_end", "window_end"),
)

# Phone-channel API calls: the answer given to each caller request id (a retry gets the same
# answer and changes nothing twice), and the signatures seen (a replayed call is refused).
api_requests = sa.Table(
    "api_requests",
    metadata,
    sa.Column("caller", sa.String(8), primary_key=True),
    sa.Column("request_id", sa.String(100), primary_key=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_api_requests_created_at", "created_at"),
)

api_signatures = sa.Table(
    "api_signatures",
    metadata,
    sa.Column("signature", sa.String(64), primary_key=True),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _forget_parents_connections() -> None:
    """In a forked child (a render process): the pooled connections are the parent's, so each
    engine starts a new pool, leaving the parent's connections open for the parent. The lock
    may have been held by another thread at the fork: the child gets a new one."""
    global _engines_lock
    _engines_lock = threading.Lock()
    for engine in list(_engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parents_connections)


def open_ledger(url: str) -> Engine:
    """An engine for the ledger at `url`, its schema created or migrated on first use.

    LedgerError (retryable) when the database cannot be reached or refuses the connection."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            try:
                migrate(engine)  # the process's first connection
            except OperationalError as exc:
                engine.dispose()
                raise LedgerError(_unreachable(url, exc)) from exc
            _engines[url] = engine
        return engine


def _unreachable(url: str, exc: OperationalError) -> str:
    parsed = make_url(url)
    reason = str(exc.orig).strip()
    if parsed.password:  # drivers do not echo it, but the message may end up in a log
        reason = reason.replace(str(parsed.password), "***")
    where = parsed.render_as_string(hide_password=True)
    return f"could not open the ledger at {where}: {reason}"


def _create_engine(url: str) -> Engine:
    # hide_parameters: a failed statement's error then names no bound value, so a phone number,
    # an e-mail address or a token never reaches a log through a database error.
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        # Take the write lock when a transaction starts, not at its first write: an issuing
        # transaction reads the counter and then writes it, and must not interleave with another.
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    # psycopg prepares a statement after a few runs and PostgreSQL may then keep one generic
    # plan for it, made while the table was small: `customer_id IN (...)` of the issuing batch
    # then scans the whole cycle. Custom plans per execution keep the (cycle, customer) index.
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"options": "-c plan_cache_mode=force_custom_plan"},
        hide_parameters=True,
    )


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" hook issue BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def insert_rows(connection: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert `rows` (dicts with the same keys) as `connection.execute(table.insert(), rows)`
    would, with each column's own bind processing, but without SQLAlchemy's per-row parameter
    handling: PostgreSQL takes them by COPY, SQLite by one executemany. Issuing writes about 22
    rows an invoice, and that handling was a third of its time."""
    if not rows:
        return
    dialect = connection.dialect
    unknown = rows[0].keys() - table.c.keys()
    if unknown:
        raise KeyError(f"{table.name} has no column {sorted(unknown)[0]}")
    columns = [column for column in table.columns if column.name in rows[0]]  # table order
    processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
    names = [column.name for column in columns]
    by_column = [
        [row[name] for row in rows]
        if processor is None
        else list(map(processor, (row[name] for row in rows)))
        for name, processor in zip(names, processors, strict=True)
    ]  # column by column: one map per column, not a generator step per value
    values = list(zip(*by_column, strict=True))
    cursor = connection.connection.cursor()
    try:
        if dialect.name == "postgresql":
            quote = dialect.identifier_preparer
            listed = ", ".join(quote.quote(name) for name in names)
            with cursor.copy(f"COPY {quote.format_table(table)} ({listed}) FROM STDIN") as copy:
                for value in values:
                    copy.write_row(value)
        else:  # SQLite's qmark style: the statement's ? in column order
            statement = table.insert().values({name: sa.bindparam(name) for name in names})
            cursor.executemany(str(statement.compile(dialect=dialect)), values)
    finally:
        cursor.close()


def lock_manifest_chain(connection) -> None:
    """Serialise appends to the manifest chain until the transaction ends (on SQLite the
    transaction's write lock already does)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK_ID})")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest version; safe to call from many processes at once."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def load_efactura_tokens(engine: Engine) -> tuple[str, str, float] | None:
    """(access token, refresh token, expiry) as last refreshed, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(efactura_tokens.c.access_token, efactura_tokens.c.refresh_token,
                      efactura_tokens.c.expires_at).where(efactura_tokens.c.id == 1)
        ).first()  # fmt: skip
    return tuple(row) if row else None


def save_efactura_tokens(engine: Engine, access: str, refresh: str, expires_at: float) -> None:
    """Keep a refreshed token pair (one row, replaced)."""
    from datetime import UTC, datetime

    values = {"access_token": access, "refresh_token": refresh, "expires_at": expires_at,
              "refreshed_at": datetime.now(UTC)}  # fmt: skip
    with engine.begin() as conn:
        if (
            conn.execute(
                efactura_tokens.update().where(efactura_tokens.c.id == 1).values(**values)
            ).rowcount
            == 0
        ):
            conn.execute(efactura_tokens.insert().values(id=1, **values))
