"""Settings from Airflow connections, for the DAG's tasks.

Two variables name connections; when one is unset (or blank) its settings stay as
`Settings.from_env` read them from the environment:

    INVOICES_AWS_CONN_ID    an Amazon Web Services connection: the S3 client of the archive and,
                            when INVOICES_SMS_TRANSPORT=sns, the SNS client of the SMS channel
    INVOICES_SMTP_CONN_ID   an SMTP connection: host, port, TLS mode, login and sender address,
                            read the way the SMTP provider's `SmtpHook` reads them

The connections are looked up when this runs (in a task), never while a DAG file is parsed.
Airflow is imported only here, inside the function: the billing core imports without it.
Nothing secret (a password, a key) reaches the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from billing.config import Settings
from billing.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

AWS_CONN_VARIABLE = "INVOICES_AWS_CONN_ID"
SMTP_CONN_VARIABLE = "INVOICES_SMTP_CONN_ID"


def settings_with_connections(settings: Settings, env: Mapping[str, str] | None = None) -> Settings:
    """`settings` with what the Airflow connections named in `env` (default: the process
    environment) provide; `settings` itself when neither variable names one.

    INVOICES_AWS_CONN_ID: `s3_client` (and `sns_client` when `sms_transport` is "sns") built by
    the Amazon provider's hooks from that connection. INVOICES_SMTP_CONN_ID: `smtp_host`,
    `smtp_port`, `smtp_tls`, `smtp_username`, `smtp_password` and, when the connection has a
    `from_email` extra, `mail_from`. Raises `ConfigurationError` for a connection that does not
    exist or cannot be used.

    Only the two variables are read from `env`; Airflow finds the connections themselves where
    it always does (`AIRFLOW_CONN_*` in the process environment, secrets backends, the API
    server inside a task).
    """
    env = os.environ if env is None else env
    changes: dict[str, Any] = {}
    aws_conn_id = env.get(AWS_CONN_VARIABLE, "").strip()
    if aws_conn_id:
        changes.update(_aws_clients(settings, aws_conn_id))
    smtp_conn_id = env.get(SMTP_CONN_VARIABLE, "").strip()
    if smtp_conn_id:
        changes.update(_smtp_settings(settings, smtp_conn_id))
    return replace(settings, **changes) if changes else settings


def _connection(hook_class: Any, conn_id: str, variable: str) -> Any:
    """The Airflow connection `conn_id` (looked up through `hook_class`, a provider's hook)."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    try:
        return hook_class.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigurationError(
            f"{variable} names the Airflow connection {conn_id!r}, which does not exist"
        ) from None


def _aws_clients(settings: Settings, conn_id: str) -> dict[str, Any]:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    from notifiers.sms import CLIENT_CONFIG as SNS_CLIENT_CONFIG
    from storage.s3_client import CLIENT_CONFIG as S3_CLIENT_CONFIG

    # The hooks would quietly fall back to boto3's own settings for a missing connection.
    _connection(S3Hook, conn_id, AWS_CONN_VARIABLE)
    clients: dict[str, Any] = {
        "s3_client": S3Hook(aws_conn_id=conn_id, config=S3_CLIENT_CONFIG).get_conn()
    }
    if settings.sms_transport == "sns":
        clients["sns_client"] = SnsHook(aws_conn_id=conn_id, config=SNS_CLIENT_CONFIG).get_conn()
    log.info("AWS clients from the Airflow connection %r: %s", conn_id, ", ".join(clients))
    return clients


def _smtp_settings(settings: Settings, conn_id: str) -> dict[str, Any]:
    """The SMTP settings of connection `conn_id`, as `SmtpHook` reads them: SSL from the first
    byte unless the `disable_ssl` extra is true, else STARTTLS unless `disable_tls` is true; the
    port smtplib defaults to (465 for SSL, else 25) when the connection has none; a login only
    with both login and password. The `timeout` and `retry_limit` extras have no setting here
    (the e-mail channel has its own). Opens no SMTP connection."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    hook = SmtpHook(smtp_conn_id=conn_id)
    # What SmtpHook.get_conn loads before it connects; its properties read from it.
    hook.smtp_connection = _connection(SmtpHook, conn_id, SMTP_CONN_VARIABLE)
    where = f"{SMTP_CONN_VARIABLE}: the Airflow connection {conn_id!r}"
    if hook.auth_type != "basic":
        raise ConfigurationError(
            f"{where} asks for auth_type {hook.auth_type!r}; only basic (login and password) "
            "is supported"
        )
    if hook.ssl_context not in (None, "default", "none"):
        raise ConfigurationError(
            f"{where} has ssl_context {hook.ssl_context!r}; it must be 'default' or 'none'"
        )
    if hook.ssl_context == "none":
        log.warning(
            "%s has ssl_context 'none': the certificate of the SMTP server is checked anyway",
            where,
        )
    if not hook.host:
        raise ConfigurationError(f"{where} has no host")
    # SmtpHook: SMTP_SSL unless disable_ssl; STARTTLS (on a plain connection) unless disable_tls.
    tls = "ssl" if hook.use_ssl else "starttls" if hook.smtp_starttls else "none"
    port = hook.port or (465 if tls == "ssl" else 25)  # smtplib's defaults, as the hook gets them
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where} has a port that is not a number: {port!r}") from None
    if port < 1:
        raise ConfigurationError(f"{where} has port {port}")
    # SmtpHook logs in only when it has both a login and a password.
    authenticated = bool(hook.smtp_user and hook.smtp_password)
    log.info(
        "SMTP settings from the Airflow connection %r: %s:%d, tls %s, %s",
        conn_id,
        hook.host,
        port,
        tls,
        "with login" if authenticated else "without login",
    )
    return {
        "smtp_host": hook.host,
        "smtp_port": port,
        "smtp_tls": tls,
        "smtp_username": hook.smtp_user if authenticated else "",
        "smtp_password": hook.smtp_password if authenticated else "",
        "mail_from": hook.from_email or settings.mail_from,
    }
