"""A real SMTP server for the notifier tests, as in aiosmtplib's own tests/smtpd.py.

`smtp_server()` runs aiosmtpd in a thread on 127.0.0.1 (a free port) with a `RecordingHandler`
that keeps every accepted message, parsed, and can be told to misbehave per recipient:

    handler.transient["a@example.com"] = 2      answer 451 to its first 2 RCPTs, then accept
    handler.refused.add("b@example.com")        answer 550 to every RCPT
    handler.delays["c@example.com"] = (1.5, 1)  wait 1.5 s before answering its first RCPT
    handler.drop_at_mail.add(10)                hang up, unanswered, on the server's 10th MAIL
    handler.drop_at_data.add(1)                 accept the 1st message, then hang up before
                                                the 250 reply (the client cannot know)
    handler.sender_reply = "553 ..."            refuse every MAIL FROM

`tls_contexts(folder)` makes a self-signed certificate for 127.0.0.1 and returns the server's and
a trusting client's SSL contexts; `Authenticator` checks one login for AUTH PLAIN/LOGIN.
`smtp_notifier(settings, **options)` is the `EmailNotifier` `Runtime.email` builds, with the
options no setting has (pool size, backoff, timeout, a TLS context).
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from billing.config import Settings
from notifiers.email import EmailNotifier

HOST = "127.0.0.1"
TRANSIENT_REPLY = "451 4.7.1 Try again later"
REFUSED_REPLY = "550 5.1.1 No such user"


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    peer: tuple
    tls: bool
    authenticated: bool

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class RecordingHandler:
    """aiosmtpd handler that records what it accepts and misbehaves on request."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_attempts: Counter[str] = Counter()
        self.mail_commands = 0
        self.peers: set[tuple] = set()  # client connections that sent MAIL
        self.transient: dict[str, int] = {}
        self.refused: set[str] = set()
        self.delays: dict[str, tuple[float, int]] = {}
        self.drop_at_mail: set[int] = set()
        self.drop_at_data: set[int] = set()
        self.sender_reply = ""  # answer every MAIL with this instead of 250
        self.drops = 0
        self._data_commands = 0
        self._lock = threading.Lock()

    def message_ids(self) -> Counter[str]:
        """How many times each Message-ID arrived."""
        with self._lock:
            return Counter(item.message_id for item in self.received)

    def for_recipient(self, address: str) -> list[Received]:
        with self._lock:
            return [item for item in self.received if address in item.rcpt_tos]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self._lock:
            self.mail_commands += 1
            drop = self.mail_commands in self.drop_at_mail
            self.peers.add(session.peer)
        if drop:
            self.drops += 1
            server.transport.close()  # the reply below is never written
            return "421 4.4.2 Connection dropped"
        if self.sender_reply:
            return self.sender_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            self.rcpt_attempts[address] += 1
            attempt = self.rcpt_attempts[address]
        seconds, times = self.delays.get(address, (0.0, 0))
        if attempt <= times:
            await asyncio.sleep(seconds)
        if address in self.refused:
            return REFUSED_REPLY
        if attempt <= self.transient.get(address, 0):
            return TRANSIENT_REPLY
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=email.message_from_bytes(raw, policy=email.policy.default),
            raw=raw,
            peer=session.peer,
            tls=server.transport.get_extra_info("ssl_object") is not None,
            authenticated=bool(session.authenticated),
        )
        with self._lock:
            self.received.append(received)
            self._data_commands += 1
            drop = self._data_commands in self.drop_at_data
        if drop:
            self.drops += 1
            server.transport.close()
        return "250 2.0.0 Message accepted for delivery"


class Authenticator:
    """Accepts exactly one username and password; records the connections that tried."""

    def __init__(self, username: str, password: str) -> None:
        self.expected = LoginPassword(username.encode(), password.encode())
        self.peers: set[tuple] = set()

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.peers.add(session.peer)
        # handled=False: let aiosmtpd answer 535 itself (handled=True would send no reply).
        return AuthResult(success=auth_data == self.expected, handled=False)


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    handler: RecordingHandler


class _Controller(Controller):
    def _trigger_server(self) -> None:
        # Bound to port 0: learn the port the OS chose before the readiness probe connects.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def smtp_server(handler: RecordingHandler | None = None, **smtp_parameters) -> Iterator[Server]:
    """Run aiosmtpd on 127.0.0.1 (a free port) for the duration of the block.

    `smtp_parameters` go to aiosmtpd (`ssl_context` for implicit TLS, `tls_context` and
    `require_starttls` for STARTTLS, `authenticator`, `auth_require_tls`, ...).
    """
    handler = handler or RecordingHandler()
    controller = _Controller(handler, hostname=HOST, port=0, **smtp_parameters)
    controller.start()
    try:
        yield Server(HOST, controller.port, handler)
    finally:
        controller.stop()


def smtp_notifier(settings: Settings, **options) -> EmailNotifier:
    """The SMTP notifier of `settings` (as `Runtime.email` builds it), with `options` such as
    `pool_size`, `backoff_base` or `tls_context` that are not settings."""
    return EmailNotifier(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_tls,
        settings.smtp_username,
        settings.smtp_password,
        settings.mail_from,
        **options,
    )


def tls_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (server context, client context trusting it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "invoices test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = folder / "smtpd.crt", folder / "smtpd.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client
