"""`EmailNotifier`: invoice notices over SMTP through a small pool of reused connections.

Each message gets a Message-ID derived from its idempotency key (`notifiers.email.message`).
aiosmtplib's errors are mapped into the tree of `billing.domain.errors` here, at one point:

    RetryableDeliveryError   4xx replies, timeouts, dropped connections: retried with capped
                             exponential backoff and full jitter; after the last attempt the
                             result is FAILED_RETRYABLE and the notice stays pending
    PermanentDeliveryError   5xx replies, an unusable recipient: FAILED_PERMANENT at once
    ConfigurationError       raised, not reported: a sender or setting no message can go with

When the server cannot be used at all (refused login, failed TLS, unreachable for as many
consecutive connection attempts as a message may make), the rest of the batch is reported
FAILED_RETRYABLE straight away instead of hammering the server.

Logs carry the idempotency key and the outcome only: never an address, a password or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiosmtplib

from billing.domain.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from billing.domain.notices import NoticeStatus
from notifiers.base import DeliveryResult, Outgoing, ResultCallback
from notifiers.email.message import RenderedMessage, parse_sender, render_message

logger = logging.getLogger(__name__)

TLS_MODES = ("none", "starttls", "ssl")


class EmailNotifier:
    """Sends notices through an SMTP relay over `pool_size` reused connections.

    `tls` is "none", "starttls" (upgrade a plain connection, required) or "ssl" (TLS from the
    first byte). A `username` means AUTH after connecting. `timeout` bounds each SMTP command.
    `tls_context` replaces the default certificate checks (e.g. a private CA).
    """

    def __init__(
        self,
        host: str,
        port: int,
        tls: str = "none",
        username: str = "",
        password: str = "",
        mail_from: str = "facturi@example.ro",
        pool_size: int = 4,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not host:
            raise ConfigurationError("INVOICES_SMTP_HOST is empty")
        if tls not in TLS_MODES:
            raise ConfigurationError(f"INVOICES_SMTP_TLS must be one of {TLS_MODES}, not {tls!r}")
        if pool_size < 1 or max_attempts < 1:
            raise ConfigurationError("pool_size and max_attempts must be at least 1")
        self._envelope_from = parse_sender(mail_from).addr_spec
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self._password = password
        self.mail_from = mail_from
        self.pool_size = pool_size
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.tls_context = tls_context

    def __repr__(self) -> str:
        return f"EmailNotifier(host={self.host!r}, port={self.port}, tls={self.tls!r})"

    def send(
        self, messages: Sequence[Outgoing], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """Send `messages` (see `send_all`) from synchronous code."""
        return asyncio.run(self.send_all(messages, on_result))

    async def send_all(
        self, messages: Sequence[Outgoing], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """Send every message; one result per message, in order (a repeated key is sent once
        and shares the first one's result). `on_result` gets each result as it is final: the
        server's 250 for one message, not the end of the batch."""
        batch = _Batch(on_result=on_result)
        for outgoing in messages:
            if outgoing.key in batch.results or outgoing.key in batch.jobs:
                continue
            try:
                prepared = render_message(outgoing, self.mail_from)
            except PermanentDeliveryError as exc:
                batch.finish(outgoing.key, NoticeStatus.FAILED_PERMANENT, error=str(exc))
                continue
            job = _Job(outgoing.key, prepared, prepared.message_id, prepared.recipient)
            batch.jobs[job.key] = job
            batch.queue.put_nowait(job)
        if batch.jobs:
            await self._run(batch)
        counts = Counter(result.status for result in batch.results.values())
        logger.info("e-mail batch of %d: %s", len(batch.results), dict(sorted(counts.items())))
        return [batch.results[outgoing.key] for outgoing in messages]

    async def _run(self, batch: _Batch) -> None:
        workers = [
            asyncio.create_task(self._work(batch))
            for _ in range(min(self.pool_size, len(batch.jobs)))
        ]
        finished = asyncio.create_task(batch.finished.wait())
        try:
            await asyncio.wait([finished, *workers], return_when=asyncio.FIRST_COMPLETED)
            crashed = [worker for worker in workers if worker.done()]
            if crashed:
                await crashed[0]  # a bug in a worker: raise it rather than wait forever
            for _ in workers:
                batch.queue.put_nowait(None)
            await asyncio.gather(*workers)
        finally:
            finished.cancel()
            batch.cancel_timers()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, batch: _Batch) -> None:
        """One pooled connection: takes jobs until the batch is done, reconnecting as needed."""
        client = self._client()
        connect_failures = 0
        try:
            while (job := await batch.queue.get()) is not None:
                if batch.fatal:
                    batch.finish(job.key, NoticeStatus.FAILED_RETRYABLE, error=batch.fatal)
                    continue
                if not client.is_connected:
                    try:
                        await self._connect(client)
                    except _ConnectionFailed as exc:
                        connect_failures += 1
                        if exc.fatal or batch.connection_failed() >= self.max_attempts:
                            _stop(batch, str(exc))
                        self._retry_or_fail(batch, job, exc)
                        # Back off this connection too, so a down server is not hammered.
                        await batch.sleep(self._backoff(connect_failures - 1))
                        continue
                    connect_failures = 0
                    batch.connection_succeeded()
                try:
                    await self._deliver(client, job)
                except PermanentDeliveryError as exc:
                    batch.finish(job.key, NoticeStatus.FAILED_PERMANENT, error=str(exc))
                    logger.warning("e-mail %s: failed-permanent: %s", job.key, exc)
                except _SenderRefused as exc:
                    _stop(batch, str(exc))
                    self._retry_or_fail(batch, job, exc)
                except RetryableDeliveryError as exc:
                    self._retry_or_fail(batch, job, exc)
                else:
                    batch.finish(job.key, NoticeStatus.SENT, provider_message_id=job.message_id)
                    logger.info("e-mail %s: sent (attempt %d)", job.key, job.attempt + 1)
        finally:
            await _disconnect(client)

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username or None,
            password=self._password if self.username else None,
            timeout=self.timeout,
            use_tls=self.tls == "ssl",
            # "none" means none: aiosmtplib would otherwise upgrade whenever the server offers it.
            start_tls=self.tls == "starttls",
            tls_context=self.tls_context,
        )

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as exc:
            # A refused greeting, STARTTLS or AUTH: 4xx may pass, 5xx (e.g. 535) will not.
            raise _ConnectionFailed(_describe(exc), fatal=not 400 <= exc.code <= 499) from None
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            OSError,
            TimeoutError,
        ) as exc:
            # A certificate the context refuses will be refused on every attempt.
            raise _ConnectionFailed(_describe(exc), fatal=_refused_by_tls(exc)) from None
        except aiosmtplib.SMTPException as exc:
            # The server offers no STARTTLS, or no AUTH method we speak: a configuration mismatch.
            raise _ConnectionFailed(_describe(exc), fatal=True) from None

    async def _deliver(self, client: aiosmtplib.SMTP, job: _Job) -> None:
        """One attempt; raises a `DeliveryError` subclass for any failure."""
        try:
            # a local part that is not ASCII can only go to a server offering SMTPUTF8
            options = [] if job.recipient.isascii() else ["SMTPUTF8"]
            await client.sendmail(
                self._envelope_from, [job.recipient], job.message.data, mail_options=options
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            raise _classified(refusal.code, _redact(refusal.message, job.recipient)) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            # 552 at MAIL is the SIZE check refusing this message; any other 5xx refuses our
            # sender (configuration, relay policy) and would refuse every message of the batch.
            if 500 <= exc.code <= 599 and exc.code != 552:
                raise _SenderRefused(f"{exc.code} {exc.message}") from None
            raise _classified(exc.code, _redact(exc.message, job.recipient)) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _classified(exc.code, _redact(exc.message, job.recipient)) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentDeliveryError(_redact(str(exc), job.recipient)) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Timeouts and lost connections; aiosmtplib has closed the client, so the next
            # attempt reconnects.
            raise RetryableDeliveryError(_redact(_describe(exc), job.recipient)) from None
        except ValueError as exc:
            raise PermanentDeliveryError("the message cannot be sent as built") from exc

    def _retry_or_fail(self, batch: _Batch, job: _Job, exc: DeliveryError) -> None:
        attempt = job.attempt
        if batch.fatal or attempt + 1 >= self.max_attempts:
            batch.finish(job.key, NoticeStatus.FAILED_RETRYABLE, error=batch.fatal or str(exc))
            logger.warning(
                "e-mail %s: failed-retryable after %d attempt(s): %s", job.key, attempt + 1, exc
            )
            return
        delay = self._backoff(attempt)
        logger.info(
            "e-mail %s: attempt %d failed (%s); retrying in %.2fs", job.key, attempt + 1, exc, delay
        )
        job.attempt += 1
        batch.retry_later(job, delay)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))


# --- internals -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    key: str
    message: RenderedMessage
    message_id: str
    recipient: str
    attempt: int = 0


@dataclass(eq=False)
class _Batch:
    queue: asyncio.Queue[_Job | None] = field(default_factory=asyncio.Queue)
    jobs: dict[str, _Job] = field(default_factory=dict)
    results: dict[str, DeliveryResult] = field(default_factory=dict)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: str = ""
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    jobs_done: int = 0
    consecutive_connect_failures: int = 0
    on_result: ResultCallback | None = None

    def finish(self, key: str, status: NoticeStatus, **details: str) -> None:
        if key in self.results:
            return
        result = self.results[key] = DeliveryResult(key, status, **details)
        if self.on_result is not None:
            self.on_result(result)
        if key in self.jobs:
            self.jobs_done += 1
            if self.jobs_done == len(self.jobs):
                self.finished.set()

    def retry_later(self, job: _Job, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def requeue() -> None:
            del self.timers[job.key]
            self.queue.put_nowait(job)

        self.timers[job.key] = loop.call_later(delay, requeue)

    async def sleep(self, delay: float) -> None:
        """Sleep `delay` seconds, or less when the batch finishes meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished.wait(), timeout=delay)

    def connection_failed(self) -> int:
        self.consecutive_connect_failures += 1
        return self.consecutive_connect_failures

    def connection_succeeded(self) -> None:
        self.consecutive_connect_failures = 0

    def abort(self, reason: str) -> None:
        """Stop sending: every job still waiting for a retry fails (retryable) now."""
        self.fatal = reason
        for key, timer in list(self.timers.items()):
            timer.cancel()
            del self.timers[key]
            self.finish(key, NoticeStatus.FAILED_RETRYABLE, error=reason)

    def cancel_timers(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()


class _ConnectionFailed(RetryableDeliveryError):
    """Connecting, the TLS handshake, EHLO or AUTH failed; `fatal` when retrying cannot help."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


class _SenderRefused(RetryableDeliveryError):
    """The server refuses our envelope sender: no message of the batch can go."""


def _stop(batch: _Batch, reason: str) -> None:
    if not batch.fatal:
        logger.error("e-mail batch stopped, the rest stays pending: %s", reason)
        batch.abort(reason)


def _classified(code: int, message: str) -> DeliveryError:
    reply = f"{code} {message}".strip()
    if 500 <= code <= 599:
        return PermanentDeliveryError(reply)
    return RetryableDeliveryError(reply)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiosmtplib.SMTPException):
        return f"timed out: {text}"
    return text


def _refused_by_tls(exc: BaseException) -> bool:
    """Whether a TLS error (other than the peer hanging up mid-handshake) caused `exc`."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            return not isinstance(seen, ssl.SSLEOFError | ssl.SSLZeroReturnError)
        seen = seen.__cause__ or seen.__context__
    return False


def _redact(text: str, recipient: str) -> str:
    """Server replies often quote the address ("<ana@x.ro>: User unknown"): keep it out."""
    if not recipient:
        return text
    return re.sub(re.escape(recipient), "<recipient>", text, flags=re.IGNORECASE)


async def _disconnect(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await client.quit()
    client.close()
