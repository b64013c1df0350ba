"""Settings from Airflow connections (`airflow_runtime.connections`): SMTP from an SMTP connection read
as the SMTP provider's hook reads it, S3 and SNS from an AWS connection; each one proven by
delivering through the product (aiosmtpd and moto's server on 127.0.0.1)."""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid

import pytest
from airflow_runtime.connections import settings_with_connections

from billing.config import Settings
from billing.domain.errors import ConfigurationError
from billing.domain.notices import NoticeStatus
from billing.runtime import Runtime
from notifiers.base import Outgoing
from storage.archive import open_archive
from tests.support.paths import SAMPLES
from tests.support.smtp import Authenticator, smtp_notifier, smtp_server, tls_contexts

SENT = NoticeStatus.SENT

LOGIN, PASSWORD = "facturi-conn", "parola-din-conexiune"
ENV_PASSWORD = "parola-din-mediu"
FROM_CONNECTION = "Facturi Conexiune <conexiune@example.ro>"


def unique_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def define_connection(monkeypatch, conn_id: str, **fields) -> None:
    """The Airflow connection `conn_id`, as an operator would define it in the environment."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def smtp_connection(monkeypatch, extra: dict, **fields) -> str:
    conn_id = unique_id("invoices_smtp")
    define_connection(monkeypatch, conn_id, conn_type="smtp", extra=extra, **fields)
    return conn_id


@pytest.fixture
def smtp_env(monkeypatch, tmp_path):
    """INVOICES_SMTP_* in the environment, every one different from what the connections say."""
    for name, value in {
        "INVOICES_HOME": str(tmp_path / "home"),
        "INVOICES_SOURCE_URL": str(SAMPLES),
        "INVOICES_SMTP_HOST": "smtp.from-the-env.invalid",
        "INVOICES_SMTP_PORT": "2600",
        "INVOICES_SMTP_TLS": "ssl",
        "INVOICES_SMTP_USERNAME": "env-user",
        "INVOICES_SMTP_PASSWORD": ENV_PASSWORD,
        "INVOICES_MAIL_FROM": "mediu@example.ro",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("INVOICES_AWS_CONN_ID", raising=False)


def notice(n: int = 1) -> Outgoing:
    number = f"OR{n:08d}"
    return Outgoing(
        key=f"{number}:email",
        recipient=f"client{n:03d}@example.com",
        subject=f"Factura {number}",
        text=f"Factura {number} este atașată.\n",
        html=f"<p>Factura <b>{number}</b></p>\n",
        attachment=(f"{number}.pdf", b"%PDF-1.7 test"),
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_settings_come_from_the_connection_and_deliver(smtp_env, monkeypatch, caplog):
    authenticator = Authenticator(LOGIN, PASSWORD)
    with smtp_server(
        authenticator=authenticator, auth_required=True, auth_require_tls=False
    ) as server:
        conn_id = smtp_connection(
            monkeypatch,
            {"disable_ssl": True, "disable_tls": True, "from_email": FROM_CONNECTION},
            host=server.host,
            port=server.port,
            login=LOGIN,
            password=PASSWORD,
        )
        monkeypatch.setenv("INVOICES_SMTP_CONN_ID", conn_id)
        with caplog.at_level(logging.DEBUG):
            settings = settings_with_connections(Settings.from_env())
            results = Runtime(settings).email.send([notice()])

    assert (settings.smtp_host, settings.smtp_port, settings.smtp_tls) == (
        server.host,
        server.port,
        "none",
    )
    assert (settings.smtp_username, settings.smtp_password) == (LOGIN, PASSWORD)
    assert settings.mail_from == FROM_CONNECTION
    assert [result.status for result in results] == [SENT]
    [received] = server.handler.received
    assert received.authenticated and not received.tls
    assert received.mail_from == "conexiune@example.ro"
    assert received.rcpt_tos == ("client001@example.com",)
    assert authenticator.peers  # the connection's login was used
    assert PASSWORD not in repr(settings) + caplog.text
    assert ENV_PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("mode", "extra", "server_tls"),
    [
        pytest.param("ssl", {}, "ssl_context", id="ssl-by-default"),
        pytest.param("starttls", {"disable_ssl": True}, "tls_context", id="starttls"),
    ],
)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_tls_modes_of_the_connection_deliver(
    smtp_env, monkeypatch, tmp_path, mode, extra, server_tls
):
    server_context, client_context = tls_contexts(tmp_path)
    tls = {server_tls: server_context}
    tls |= {"require_starttls": True} if mode == "starttls" else {"auth_require_tls": False}
    with smtp_server(authenticator=Authenticator(LOGIN, PASSWORD), auth_required=True, **tls) as (
        server
    ):
        conn_id = smtp_connection(
            monkeypatch, extra, host=server.host, port=server.port, login=LOGIN, password=PASSWORD
        )
        settings = settings_with_connections(
            Settings.from_env(), env={"INVOICES_SMTP_CONN_ID": conn_id}
        )
        # The self-signed test certificate: trusted through the notifier's own option.
        channel = smtp_notifier(settings, tls_context=client_context)
        results = channel.send([notice()])

    assert settings.smtp_tls == mode
    assert settings.mail_from == "mediu@example.ro"  # no from_email extra: the env's stays
    assert [result.status for result in results] == [SENT]
    [received] = server.handler.received
    assert received.tls and received.authenticated


@pytest.mark.parametrize(
    ("extra", "port", "tls", "expected_port"),
    [
        pytest.param({}, None, "ssl", 465, id="ssl-unless-disabled"),
        pytest.param({"disable_tls": True}, None, "ssl", 465, id="disable_tls-alone-keeps-ssl"),
        pytest.param({"disable_ssl": True}, None, "starttls", 25, id="starttls"),
        pytest.param({"disable_ssl": True}, 587, "starttls", 587, id="starttls-587"),
        pytest.param({"disable_ssl": True, "disable_tls": True}, None, "none", 25, id="plain"),
        pytest.param(
            {"disable_ssl": False, "disable_tls": False}, 2465, "ssl", 2465, id="ssl-port"
        ),
    ],
)
def test_the_connection_maps_as_smtp_hook_reads_it(
    smtp_env, monkeypatch, extra, port, tls, expected_port
):
    fields = {"host": "smtp.example.ro", "login": LOGIN, "password": PASSWORD}
    if port is not None:
        fields["port"] = port
    conn_id = smtp_connection(monkeypatch, extra, **fields)

    settings = settings_with_connections(
        Settings.from_env(), env={"INVOICES_SMTP_CONN_ID": conn_id}
    )

    assert (settings.smtp_host, settings.smtp_port, settings.smtp_tls) == (
        "smtp.example.ro",
        expected_port,
        tls,
    )
    assert (settings.smtp_username, settings.smtp_password) == (LOGIN, PASSWORD)


def test_a_login_without_password_means_no_auth_as_in_smtp_hook(smtp_env, monkeypatch):
    conn_id = smtp_connection(
        monkeypatch, {"disable_ssl": True}, host="smtp.example.ro", login=LOGIN
    )

    settings = settings_with_connections(
        Settings.from_env(), env={"INVOICES_SMTP_CONN_ID": conn_id}
    )

    assert (settings.smtp_username, settings.smtp_password) == ("", "")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param({"extra": {"auth_type": "oauth2"}}, "oauth2", id="oauth2"),
        pytest.param({"extra": {"ssl_context": "lax"}}, "ssl_context", id="bad-ssl_context"),
        pytest.param({"host": ""}, "no host", id="no-host"),
    ],
)
def test_a_connection_the_product_cannot_use_is_a_configuration_error(
    smtp_env, monkeypatch, fields, problem
):
    conn_id = unique_id("invoices_smtp")
    define_connection(
        monkeypatch, conn_id, **({"conn_type": "smtp", "host": "smtp.example.ro"} | fields)
    )

    with pytest.raises(ConfigurationError, match=problem) as raised:
        settings_with_connections(Settings.from_env(), env={"INVOICES_SMTP_CONN_ID": conn_id})
    assert conn_id in str(raised.value)


def moto_sms(endpoint: str, message_ids) -> dict[str, dict]:
    """What moto's server recorded for these message ids: {id: {phone_number, message}}."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as response:
        recorded = json.load(response)["sns"]["SMS"]
    return {item["message_id"]: item for item in recorded if item["message_id"] in message_ids}


def test_sns_and_s3_clients_come_from_the_aws_connection(s3_bucket, monkeypatch, tmp_path):
    client, bucket = s3_bucket
    endpoint = client.meta.endpoint_url
    # the connection, not boto3's environment, must carry the endpoint, region and credentials
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        monkeypatch.delenv(name)
    monkeypatch.delenv("INVOICES_SMS_RATE", raising=False)
    monkeypatch.delenv("INVOICES_SMTP_CONN_ID", raising=False)
    monkeypatch.setenv("INVOICES_HOME", str(tmp_path))
    monkeypatch.setenv("INVOICES_SMS_TRANSPORT", "sns")
    conn_id = unique_id("invoices_aws")
    monkeypatch.setenv("INVOICES_AWS_CONN_ID", conn_id)
    define_connection(
        monkeypatch,
        conn_id,
        conn_type="aws",
        login="testing",
        password="testing",
        extra={"endpoint_url": endpoint, "region_name": "eu-central-1"},
    )

    settings = settings_with_connections(Settings.from_env())
    notifier = Runtime(settings).sms
    phone = f"+4072{uuid.uuid4().int % 10**7:07d}"
    [result] = notifier.send(
        [Outgoing(key="OR00000001:sms", recipient=phone, subject="", text="Factura OR00000001")]
    )

    assert settings.sns_client is not None
    assert notifier.transport.client is settings.sns_client
    assert result.status == SENT, result.error
    recorded = moto_sms(endpoint, {result.provider_message_id})
    assert recorded[result.provider_message_id]["phone_number"] == phone
    assert recorded[result.provider_message_id]["message"] == "Factura OR00000001"
    archive = open_archive(f"s3://{bucket}/via-connection", settings.s3_client)
    stored = archive.put_once("invoices/C1/OR00000001.pdf", b"%PDF-1.7 test")
    assert client.get_object(Bucket=bucket, Key="via-connection/" + stored.key)["Body"].read() == (
        b"%PDF-1.7 test"
    )


def test_no_sns_client_unless_sms_go_through_sns(monkeypatch, settings_for):
    conn_id = unique_id("invoices_aws")
    define_connection(monkeypatch, conn_id, conn_type="aws", login="testing", password="testing")

    settings = settings_with_connections(settings_for(), env={"INVOICES_AWS_CONN_ID": conn_id})

    assert settings.s3_client is not None
    assert settings.sns_client is None


@pytest.mark.parametrize("variable", ["INVOICES_SMTP_CONN_ID", "INVOICES_AWS_CONN_ID"])
def test_a_missing_connection_is_a_configuration_error(settings_for, variable):
    conn_id = unique_id("no_such_connection")

    with pytest.raises(ConfigurationError) as raised:
        settings_with_connections(settings_for(sms_transport="sns"), env={variable: conn_id})
    assert variable in str(raised.value)
    assert conn_id in str(raised.value)


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="unset"),
        pytest.param({"INVOICES_SMTP_CONN_ID": "  ", "INVOICES_AWS_CONN_ID": ""}, id="blank"),
    ],
)
def test_without_connection_ids_the_settings_stay_as_they_are(settings_for, env):
    settings = settings_for(smtp_host="smtp.example.ro", sms_transport="sns")

    assert settings_with_connections(settings, env=env) is settings
