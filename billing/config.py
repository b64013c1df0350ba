"""Settings of contract 3, read once from the environment at the edge and passed inward.

Every variable is optional; the defaults are the embedded setup (SQLite ledger, local archive,
the committed sample cycles, e-mails and SMS written to files under `$INVOICES_HOME/outbox/`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from billing.domain.cycles import DAYS_VARIABLE, parse_bill_cycle_days
from billing.domain.errors import ConfigurationError
from notifiers.email.smtp import TLS_MODES

CHECKOUT = Path(__file__).resolve().parents[1]
SAMPLE_CYCLES = CHECKOUT / "sample_data" / "cycles"

SMS_TRANSPORTS = ("file", "sns")
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")


@dataclass(frozen=True)
class Settings:
    home: Path
    ledger_url: str
    source_url: str
    archive_url: str
    staging_url: str
    chunk_size: int = 1000
    # At most this many chunks a cycle (chunks grow past chunk_size instead): each chunk is a
    # mapped task of each stage, and Airflow's overhead is per task, not per customer.
    max_chunks: int = 256
    # Processes that render PDFs beside the one archiving them; 1: render in that process.
    render_processes: int = 1
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_tls: str = "none"
    mail_from: str = "facturi@example.ro"
    sms_transport: str = "file"
    sms_sender_id: str = ""  # SNS alphanumeric sender id; empty: the account's default
    sms_rate: float | None = None  # SMS per second; None: notifiers.sms.DEFAULT_RATE, file unpaced
    archive_lock_mode: str = "COMPLIANCE"  # the S3 Object Lock mode of archived documents
    bill_cycle_days: tuple[int, ...] = (1,)
    supplier_file: Path = CHECKOUT / "renderers" / "supplier.json"
    retention_years: int = 10
    link_expiry_seconds: int = 900
    notify_lease_seconds: int = 600
    print_batch_size: int = 1000  # invoices per file of the print batch
    mail_link_url: str = ""  # set: e-mails link to this self-service page instead of attaching
    # The self-service page (contract 6) and its phone-channel API.
    portal_url: str = ""  # the page's public address, in SMS notices; empty: none
    portal_secret: str = field(default="", repr=False)  # empty: a random key under `home`
    portal_api_secret: str = field(default="", repr=False)  # empty: the phone API is closed
    otp_ttl_seconds: int = 900
    session_idle_seconds: int = 900
    session_max_seconds: int = 7200
    codes_per_phone: int = 5  # code requests per number per hour
    codes_per_client: int = 30  # code requests per client address per hour
    code_checks_per_client: int = 60  # code entries per client address per hour
    redis_url: str = ""  # set: rate-limit counters in Redis instead of the ledger database
    # RO e-Factura (contract 7): no URL, XMLs are made and validated and nothing is uploaded.
    efactura_url: str = ""  # e.g. https://api.anaf.ro/prod/FCTEL/rest
    efactura_cif: str = ""  # the supplier's CUI; empty: the supplier file's
    efactura_access_token: str = field(default="", repr=False)
    efactura_refresh_token: str = field(default="", repr=False)
    efactura_token_url: str = "https://logincert.anaf.ro/anaf-oauth2/v1/token"
    efactura_client_id: str = ""
    efactura_client_secret: str = field(default="", repr=False)
    efactura_timeout_seconds: float = 30.0
    # A ready boto3 S3 client (e.g. from an Airflow AWS connection); None: boto3's own settings.
    s3_client: object = field(default=None, repr=False, compare=False)
    # A ready boto3 SNS client (e.g. from an Airflow AWS connection), used when sms_transport is
    # "sns"; None: boto3's own settings.
    sns_client: object = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        home = Path(get("INVOICES_HOME", str(CHECKOUT / ".data"))).expanduser().absolute()
        tls = get("INVOICES_SMTP_TLS", "none").lower()
        if tls not in TLS_MODES:
            raise ConfigurationError(f"INVOICES_SMTP_TLS must be one of {TLS_MODES}, not {tls!r}")
        sms = get("INVOICES_SMS_TRANSPORT", "file").lower()
        if sms not in SMS_TRANSPORTS:
            raise ConfigurationError(
                f"INVOICES_SMS_TRANSPORT must be one of {SMS_TRANSPORTS}, not {sms!r}"
            )
        lock_mode = get("INVOICES_ARCHIVE_LOCK_MODE", "COMPLIANCE").upper()
        if lock_mode not in LOCK_MODES:
            raise ConfigurationError(
                f"the archive's Object Lock mode (INVOICES_ARCHIVE_LOCK_MODE) must be one of "
                f"{LOCK_MODES}, not {lock_mode!r}"
            )
        rate = get("INVOICES_SMS_RATE")
        link_url = get("INVOICES_MAIL_LINK_URL")
        if link_url and urlsplit(link_url).scheme not in ("https", "http"):
            raise ConfigurationError(
                f"INVOICES_MAIL_LINK_URL must be the http(s) address of the self-service page, "
                f"not {link_url!r}"
            )
        portal_url = get("INVOICES_PORTAL_URL")
        if portal_url and urlsplit(portal_url).scheme not in ("https", "http"):
            raise ConfigurationError(
                f"INVOICES_PORTAL_URL must be the http(s) address of the self-service page, "
                f"not {portal_url!r}"
            )
        secret = env.get("INVOICES_PORTAL_SECRET", "")
        if secret and len(secret.encode()) < 32:
            raise ConfigurationError("INVOICES_PORTAL_SECRET must hold at least 32 bytes")
        api_secret = env.get("INVOICES_PORTAL_API_SECRET", "")
        if api_secret and len(api_secret.encode()) < 32:
            raise ConfigurationError("INVOICES_PORTAL_API_SECRET must hold at least 32 bytes")

        def whole(name: str, default: int, minimum: int = 1) -> int:
            return _positive_int(get(name, str(default)), name, minimum)

        return cls(
            home=home,
            ledger_url=get("INVOICES_LEDGER_URL", f"sqlite:///{home / 'ledger.db'}"),
            source_url=get("INVOICES_SOURCE_URL", str(SAMPLE_CYCLES)),
            archive_url=get("INVOICES_ARCHIVE_URL", str(home / "archive")),
            staging_url=get("INVOICES_STAGING_URL", str(home / "staging")),
            chunk_size=_positive_int(get("INVOICES_CHUNK_SIZE", "1000"), "INVOICES_CHUNK_SIZE"),
            max_chunks=_positive_int(get("INVOICES_MAX_CHUNKS", "256"), "INVOICES_MAX_CHUNKS"),
            render_processes=_positive_int(
                get("INVOICES_RENDER_PROCESSES", str(usable_cpus())), "INVOICES_RENDER_PROCESSES"
            ),
            smtp_host=get("INVOICES_SMTP_HOST"),
            smtp_port=_positive_int(
                get("INVOICES_SMTP_PORT", "465" if tls == "ssl" else "25"), "INVOICES_SMTP_PORT"
            ),
            smtp_username=get("INVOICES_SMTP_USERNAME"),
            smtp_password=env.get("INVOICES_SMTP_PASSWORD", ""),
            smtp_tls=tls,
            mail_from=get("INVOICES_MAIL_FROM", "facturi@example.ro"),
            sms_transport=sms,
            sms_sender_id=get("INVOICES_SMS_SENDER_ID"),
            sms_rate=_positive_rate(rate, "INVOICES_SMS_RATE") if rate else None,
            archive_lock_mode=lock_mode,
            bill_cycle_days=parse_bill_cycle_days(env.get(DAYS_VARIABLE, "")),
            retention_years=_positive_int(
                get("INVOICES_ARCHIVE_RETENTION_YEARS", "10"), "INVOICES_ARCHIVE_RETENTION_YEARS"
            ),
            link_expiry_seconds=_positive_int(
                get("INVOICES_LINK_EXPIRY_SECONDS", "900"), "INVOICES_LINK_EXPIRY_SECONDS"
            ),
            notify_lease_seconds=_positive_int(
                get("INVOICES_NOTIFY_LEASE_SECONDS", "600"), "INVOICES_NOTIFY_LEASE_SECONDS", 0
            ),
            print_batch_size=whole("INVOICES_PRINT_BATCH_SIZE", 1000),
            mail_link_url=link_url,
            portal_url=portal_url,
            portal_secret=secret,
            portal_api_secret=api_secret,
            otp_ttl_seconds=whole("INVOICES_OTP_TTL_SECONDS", 900, 60),
            session_idle_seconds=whole("INVOICES_SESSION_IDLE_SECONDS", 900, 60),
            session_max_seconds=whole("INVOICES_SESSION_MAX_SECONDS", 7200, 60),
            codes_per_phone=whole("INVOICES_CODES_PER_PHONE", 5),
            codes_per_client=whole("INVOICES_CODES_PER_CLIENT", 30),
            code_checks_per_client=whole("INVOICES_CODE_CHECKS_PER_CLIENT", 60),
            redis_url=get("INVOICES_REDIS_URL"),
            efactura_url=get("INVOICES_EFACTURA_URL"),
            efactura_cif=get("INVOICES_EFACTURA_CIF"),
            efactura_access_token=get("INVOICES_EFACTURA_ACCESS_TOKEN"),
            efactura_refresh_token=get("INVOICES_EFACTURA_REFRESH_TOKEN"),
            efactura_token_url=get(
                "INVOICES_EFACTURA_TOKEN_URL", "https://logincert.anaf.ro/anaf-oauth2/v1/token"
            ),
            efactura_client_id=get("INVOICES_EFACTURA_CLIENT_ID"),
            efactura_client_secret=get("INVOICES_EFACTURA_CLIENT_SECRET"),
            efactura_timeout_seconds=float(
                _positive_int(
                    get("INVOICES_EFACTURA_TIMEOUT_SECONDS", "30"),
                    "INVOICES_EFACTURA_TIMEOUT_SECONDS",
                )
            ),
            supplier_file=Path(
                get("INVOICES_SUPPLIER_FILE", str(CHECKOUT / "renderers" / "supplier.json"))
            ),
        )


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _positive_rate(value: str, name: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a number of messages per second, not {value!r}"
        ) from None
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigurationError(f"{name} must be positive, not {value!r}")
    return rate


def _positive_int(value: str, name: str, minimum: int = 1) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, not {number}")
    return number
