"""The e-mail channel against a real aiosmtpd server on 127.0.0.1 that refuses, delays and drops."""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import socket
import time

import pytest

from billing.config import Settings
from billing.domain.errors import ConfigurationError, PermanentDeliveryError
from billing.domain.notices import NoticeStatus
from billing.runtime import Runtime
from notifiers.base import Outgoing
from notifiers.email import EmailNotifier, EmlFileNotifier, build_message, message_id
from renderers.messages import render_email
from renderers.pdf import render_invoice
from renderers.supplier import load_supplier
from tests.support.factory import make_invoice
from tests.support.smtp import (
    REFUSED_REPLY,
    TRANSIENT_REPLY,
    Authenticator,
    RecordingHandler,
    smtp_server,
    tls_contexts,
)

MAIL_FROM = "Telecom Exemplu SA <facturi@telecom-exemplu.ro>"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"\r\n.\r\n\n.\n%%EOF\n"
FAST = {"timeout": 2.0, "max_attempts": 5, "backoff_base": 0.01, "backoff_cap": 0.05}
SENT, FAILED_RETRYABLE, FAILED_PERMANENT = (
    NoticeStatus.SENT,
    NoticeStatus.FAILED_RETRYABLE,
    NoticeStatus.FAILED_PERMANENT,
)


def address(n: int) -> str:
    return f"client{n:03d}@example.com"


def outgoing(n: int, **changes) -> Outgoing:
    number = f"OR{n:08d}"
    fields = {
        "key": f"{number}:email",
        "recipient": address(n),
        "subject": f"Factura {number} de la Telecom Exemplu SA",
        "text": f"Factura {number} este atașată.\n",
        "html": f"<p>Factura <b>{number}</b> este atașată.</p>\n",
        "attachment": (f"{number}.pdf", PDF),
    }
    return Outgoing(**(fields | changes))


def notifier(server, **options) -> EmailNotifier:
    settings = FAST | {"mail_from": MAIL_FROM} | options
    return EmailNotifier(server.host, server.port, **settings)


@pytest.fixture
def server():
    with smtp_server() as running:
        yield running


def notifier_records(caplog) -> str:
    return "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("notifiers")
    )


def test_a_mixed_batch_accounts_for_every_key_and_delivers_each_message_once(server, caplog):
    handler: RecordingHandler = server.handler
    transient = {3: 2, 11: 1, 25: 3}  # 451 this many times, then accepted
    refused = {5, 17, 30}
    never = 33  # 451 on every attempt
    slow = {7, 8}
    times_out_once = 21
    for n, times in transient.items():
        handler.transient[address(n)] = times
    handler.transient[address(never)] = 99
    handler.refused.update(address(n) for n in refused)
    for n in slow:
        handler.delays[address(n)] = (0.1, 99)
    handler.delays[address(times_out_once)] = (2.5, 1)  # longer than the 2 s command timeout
    handler.drop_at_mail.add(10)
    messages = [outgoing(n) for n in range(40)]

    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        results = notifier(server, pool_size=4).send(messages)
    elapsed = time.monotonic() - started

    assert [result.key for result in results] == [message.key for message in messages]
    status = {result.key: result.status for result in results}
    expected = {
        outgoing(n).key: FAILED_PERMANENT
        if n in refused
        else FAILED_RETRYABLE
        if n == never
        else SENT
        for n in range(40)
    }
    assert status == expected

    # Every sent message arrived exactly once, under the Message-ID reported back.
    sent = [result for result in results if result.status == SENT]
    arrived = handler.message_ids()
    assert arrived == {result.provider_message_id: 1 for result in sent}
    for n in range(40):
        copies = handler.for_recipient(address(n))
        assert len(copies) == (1 if status[outgoing(n).key] == SENT else 0)

    # 5xx: one attempt, the server's reply kept, the address not.
    by_key = {result.key: result for result in results}
    for n in refused:
        assert handler.rcpt_attempts[address(n)] == 1
        assert by_key[outgoing(n).key].error == REFUSED_REPLY
    # 4xx: retried until accepted, or until the attempts run out.
    for n, times in transient.items():
        assert handler.rcpt_attempts[address(n)] == times + 1
    assert handler.rcpt_attempts[address(never)] == 5
    assert by_key[outgoing(never).key].error == TRANSIENT_REPLY
    assert handler.rcpt_attempts[address(times_out_once)] == 2

    # Connections are pooled: 4, plus one after the drop and one after the timeout.
    assert handler.drops == 1
    assert len(handler.peers) <= 4 + 2
    assert elapsed < 10
    logged = notifier_records(caplog)
    assert "@example.com" not in logged and "Factura" not in logged
    assert outgoing(never).key in logged


def test_a_lost_reply_to_data_resends_with_the_same_message_id(server):
    server.handler.drop_at_data.add(1)

    [result] = notifier(server).send([outgoing(1)])

    assert result.status == SENT
    assert server.handler.drops == 1
    assert server.handler.message_ids() == {result.provider_message_id: 2}


@pytest.mark.parametrize(
    "recipient",
    [
        pytest.param("ana@example.com\r\nBcc: victim@example.com", id="crlf"),
        pytest.param("ana@example.com\nBcc: victim@example.com", id="lf"),
        pytest.param("ana@example.com, victim@example.com", id="two-addresses"),
        pytest.param("ana@example.com;victim@example.com", id="semicolon"),
        pytest.param("Ana <ana@example.com>", id="display-name"),
        pytest.param("ana@example.com>\r\nRCPT TO:<victim@example.com", id="smtp-command"),
        pytest.param("", id="empty"),
        pytest.param("ana.example.com", id="no-at"),
    ],
)
def test_a_recipient_that_is_not_one_address_fails_permanently_unsent(server, recipient):
    [result] = notifier(server).send([outgoing(1, recipient=recipient)])

    assert result.status == FAILED_PERMANENT
    assert "victim" not in result.error and "ana@" not in result.error
    assert server.handler.mail_commands == 0


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_a_line_break_in_the_subject_adds_no_header(server, newline):
    subject = f"Factura OR00000001 pentru Ana{newline}Bcc: victim@example.com"

    [result] = notifier(server).send([outgoing(1, recipient="ana@example.com", subject=subject)])

    assert result.status == SENT
    [received] = server.handler.received
    assert received.rcpt_tos == ("ana@example.com",)
    assert set(server.handler.rcpt_attempts) == {"ana@example.com"}
    assert "Bcc" not in received.message
    assert received.message["Subject"] == "Factura OR00000001 pentru Ana Bcc: victim@example.com"
    header_block = received.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc") for line in header_block.split(b"\r\n"))


def test_the_invoice_pdf_arrives_intact_beside_text_and_html(server):
    supplier = load_supplier()
    invoice = make_invoice()
    pdf = render_invoice(invoice, supplier)
    subject, text, html = render_email(invoice, supplier)
    message = Outgoing(
        "OR00000001:email", "ana@example.com", subject, text, html, ("OR00000001.pdf", pdf)
    )

    [result] = notifier(server).send([message])

    assert result.status == SENT
    [received] = server.handler.received
    mail = received.message
    assert received.mail_from == "facturi@telecom-exemplu.ro"
    assert mail["From"] == MAIL_FROM
    assert mail["To"] == "ana@example.com"
    assert mail["Subject"] == "Factura OR00000001 de la Telecom Exemplu SA"
    assert mail["Date"]
    assert mail.get_content_type() == "multipart/mixed"
    body = mail.get_body(preferencelist=("plain",))
    assert "Total de plată: 12,10 lei" in body.get_content()
    assert "Popescu Ana-Maria" in mail.get_body(preferencelist=("html",)).get_content()
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "OR00000001.pdf"
    assert hashlib.sha256(attachment.get_content()).digest() == hashlib.sha256(pdf).digest()


def test_the_message_id_is_derived_from_the_key(server):
    channel = notifier(server)

    first = channel.send([outgoing(1), outgoing(2), outgoing(1)])
    again = channel.send([outgoing(1)])

    digest = hashlib.sha256(b"OR00000001:email").hexdigest()[:32]
    expected = f"<{digest}@telecom-exemplu.ro>"
    assert message_id("OR00000001:email", MAIL_FROM) == expected
    assert first[0] == first[2] and first[0].provider_message_id == expected
    assert again[0].provider_message_id == expected
    assert first[1].provider_message_id != expected
    # The repeated key in one batch went out once; the re-run sent the same Message-ID again.
    assert server.handler.message_ids() == {expected: 2, first[1].provider_message_id: 1}


def test_an_international_domain_goes_out_in_its_ascii_form(server):
    [result] = notifier(server).send([outgoing(1, recipient="ana@poștă.ro")])

    assert result.status == SENT
    [received] = server.handler.received
    assert received.rcpt_tos == ("ana@xn--pot-cpa20l.ro",)
    assert received.message["To"] == "ana@xn--pot-cpa20l.ro"


def test_a_refused_sender_stops_the_batch_and_keeps_it_pending(server):
    server.handler.sender_reply = "553 5.7.1 Sender address rejected: not owned by user"

    results = notifier(server, pool_size=2).send([outgoing(n) for n in range(30)])

    assert {result.status for result in results} == {FAILED_RETRYABLE}
    assert {result.error for result in results} == {server.handler.sender_reply}
    assert server.handler.mail_commands <= 2
    assert not server.handler.rcpt_attempts


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("starttls", id="starttls"),
        pytest.param(
            "ssl",
            id="ssl",
            marks=pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
        ),
    ],
)
def test_tls_and_auth(tmp_path, mode, caplog):
    server_tls, client_tls = tls_contexts(tmp_path)
    authenticator = Authenticator("facturi", "s3cret-parola")
    tls = (
        {"tls_context": server_tls, "require_starttls": True}
        if mode == "starttls"
        # aiosmtpd only counts STARTTLS as TLS when it decides whether to offer AUTH.
        else {"ssl_context": server_tls, "auth_require_tls": False}
    )
    with smtp_server(authenticator=authenticator, auth_required=True, **tls) as server:
        channel = notifier(
            server, tls=mode, username="facturi", password="s3cret-parola", tls_context=client_tls
        )
        with caplog.at_level(logging.DEBUG):
            results = channel.send([outgoing(n) for n in range(6)])

    assert {result.status for result in results} == {SENT}
    assert len(server.handler.received) == 6
    assert all(item.tls and item.authenticated for item in server.handler.received)
    assert len(authenticator.peers) <= 4  # one login per pooled connection
    assert "s3cret-parola" not in repr(channel) + notifier_records(caplog)


def test_a_refused_login_stops_the_batch_and_keeps_it_pending(tmp_path, caplog):
    server_tls, client_tls = tls_contexts(tmp_path)
    authenticator = Authenticator("facturi", "the-right-one")
    with smtp_server(
        authenticator=authenticator, auth_required=True, tls_context=server_tls
    ) as server:
        channel = notifier(
            server, tls="starttls", username="facturi", password="wrong", tls_context=client_tls
        )
        with caplog.at_level(logging.DEBUG):
            results = channel.send([outgoing(n) for n in range(20)])

    assert {result.status for result in results} == {FAILED_RETRYABLE}
    assert all("535" in result.error for result in results)
    assert len(authenticator.peers) <= 4  # no connection tried again after the 535
    assert server.handler.mail_commands == 0
    assert "wrong" not in notifier_records(caplog)


def test_an_untrusted_certificate_is_refused(tmp_path):
    server_tls, _ = tls_contexts(tmp_path)
    with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        results = notifier(server, tls="starttls").send([outgoing(n) for n in range(10)])

    assert {result.status for result in results} == {FAILED_RETRYABLE}
    assert "certificate" in results[0].error.lower()
    assert server.handler.mail_commands == 0


def test_an_unreachable_server_fails_the_batch_fast_as_retryable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the notifier connects
    channel = EmailNotifier("127.0.0.1", port, mail_from=MAIL_FROM, **FAST)

    started = time.monotonic()
    results = channel.send([outgoing(n) for n in range(200)])

    assert {result.status for result in results} == {FAILED_RETRYABLE}
    assert time.monotonic() - started < 5


def test_eml_files_are_written_once(tmp_path):
    outbox = EmlFileNotifier(tmp_path / "outbox", MAIL_FROM)
    messages = [outgoing(1), outgoing(2), outgoing(3, recipient="a@example.com, b@example.com")]

    first = outbox.send(messages)
    path = tmp_path / "outbox" / "OR00000001_email.eml"
    written = path.read_bytes()
    path.touch()
    second = outbox.send(messages)

    assert [result.status for result in first] == [SENT, SENT, FAILED_PERMANENT]
    assert second == first
    assert path.read_bytes() == written
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == [
        "OR00000001_email.eml",
        "OR00000002_email.eml",
    ]
    mail = email.message_from_bytes(written, policy=email.policy.default)
    assert (
        mail["Message-ID"]
        == first[0].provider_message_id
        == message_id("OR00000001:email", MAIL_FROM)
    )
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content() == PDF


def test_settings_choose_the_channel(tmp_path):
    files = Runtime(Settings.from_env({"INVOICES_HOME": str(tmp_path)})).email
    smtp = Runtime(
        Settings.from_env(
            {
                "INVOICES_HOME": str(tmp_path),
                "INVOICES_SMTP_HOST": "smtp.example.com",
                "INVOICES_SMTP_TLS": "ssl",
                "INVOICES_SMTP_USERNAME": "facturi",
                "INVOICES_SMTP_PASSWORD": "s3cret",
            }
        )
    ).email

    assert isinstance(files, EmlFileNotifier)
    assert files.outbox_dir == tmp_path / "outbox" / "email"
    assert isinstance(smtp, EmailNotifier)
    assert (smtp.host, smtp.port, smtp.tls, smtp.username) == (
        "smtp.example.com",
        465,
        "ssl",
        "facturi",
    )
    assert "s3cret" not in repr(smtp)


@pytest.mark.parametrize(
    "mail_from",
    [
        pytest.param("facturi", id="no-domain"),
        pytest.param("Facturi <facturi@example.ro>\r\nBcc: x@example.ro", id="two-lines"),
        pytest.param("", id="empty"),
        pytest.param("@example.ro", id="no-local-part"),
    ],
)
def test_a_bad_sender_is_a_configuration_error_not_a_failed_message(tmp_path, mail_from):
    with pytest.raises(ConfigurationError, match="INVOICES_MAIL_FROM"):
        EmailNotifier("127.0.0.1", 25, mail_from=mail_from)
    with pytest.raises(ConfigurationError, match="INVOICES_MAIL_FROM"):
        EmlFileNotifier(tmp_path, mail_from)
    with pytest.raises(ConfigurationError, match="INVOICES_MAIL_FROM"):
        build_message(outgoing(1), mail_from)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(lambda tmp: build_message(outgoing(1, recipient="a@b"), MAIL_FROM), "recipient",
                     id="bad-recipient"),
        pytest.param(lambda tmp: EmlFileNotifier(tmp, MAIL_FROM).path_for("../etc:passwd"),
                     "cannot name a file", id="key-not-a-file-name"),
    ],
)  # fmt: skip
def test_a_message_that_can_never_be_sent_is_a_permanent_delivery_error(tmp_path, make, problem):
    with pytest.raises(PermanentDeliveryError, match=problem):
        make(tmp_path)


def test_eml_files_record_an_unnameable_key_as_failed_permanent(tmp_path):
    files = EmlFileNotifier(tmp_path, MAIL_FROM)

    [bad, good] = files.send([outgoing(1, key="../x:email"), outgoing(2)])

    assert (bad.status, good.status) == (FAILED_PERMANENT, SENT)
    assert "cannot name a file" in bad.error
    assert [p.name for p in tmp_path.glob("*.eml")] == ["OR00000002_email.eml"]
