"""The resources of one process, each built once from `Settings` and passed to the stages.

    Settings (the environment, and Airflow connections in a task)
        └── Runtime
              ├── ledger          SQLAlchemy engine (one per ledger URL and process)
              ├── s3_client       one boto3 S3 client, storage's retry and timeout policy
              ├── sns_client      one boto3 SNS client, the SMS channel's policy (SNS only)
              ├── source/staging  blob stores of the export and of the staged cycle
              ├── archive         the write-once archive (local folder or S3)
              ├── supplier        the issuer printed on every invoice
              ├── renderer        the PDF renderer and its template version
              ├── render_processes  processes rendering PDFs beside this one, per chunk
              ├── validator_processes  processes validating e-Factura XMLs, kept per process
              ├── email / sms     the notifiers the settings select
              └── portal keys, codes, sessions, limiter   the customer's side (billing.accounts)

Each is built when first used, then kept: a task that only stages never opens SMTP. The
orchestrators (`billing.pipeline` called by the DAGs and the CLI) make one Runtime per process and
hand it down; nothing below reads the environment.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from billing.config import Settings
from billing.domain.model import Supplier


@dataclass(frozen=True)
class Renderer:
    """Renders an invoice to PDF bytes; `template_version` is recorded with every document;
    `warm_up` builds the renderer's per-process caches (before render processes fork);
    `efactura` makes its e-Factura XML (None: none is made)."""

    render: Callable[..., bytes]
    template_version: str
    warm_up: Callable[[], None] = lambda: None
    efactura: Callable[..., bytes] | None = None


class Runtime:
    """The process's resources for `settings` (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"Runtime(archive={self.settings.archive_url!r})"

    @cached_property
    def ledger(self):
        from storage.ledger import open_ledger

        return open_ledger(self.settings.ledger_url)

    @cached_property
    def s3_client(self) -> Any:
        """The S3 client of every store and the archive: the settings' own (an Airflow
        connection's), else one from boto3's settings with storage's retry policy."""
        if self.settings.s3_client is not None:
            return self.settings.s3_client
        import boto3

        from storage.s3_client import CLIENT_CONFIG

        return boto3.session.Session().client("s3", config=CLIENT_CONFIG)

    @cached_property
    def sns_client(self) -> Any:
        if self.settings.sns_client is not None:
            return self.settings.sns_client
        import boto3

        from notifiers.sms import CLIENT_CONFIG

        return boto3.session.Session().client("sns", config=CLIENT_CONFIG)

    def _s3(self, url: str) -> Any:
        return self.s3_client if url.startswith("s3://") else None

    @cached_property
    def source(self):
        from storage.blobs import open_store

        return open_store(self.settings.source_url, self._s3(self.settings.source_url))

    @cached_property
    def staging(self):
        from storage.blobs import open_store

        return open_store(self.settings.staging_url, self._s3(self.settings.staging_url))

    @cached_property
    def archive(self):
        from storage.archive import open_archive

        url = self.settings.archive_url
        return open_archive(url, self._s3(url), lock_mode=self.settings.archive_lock_mode)

    @cached_property
    def supplier(self) -> Supplier:
        from renderers.supplier import load_supplier

        return load_supplier(self.settings.supplier_file)

    @cached_property
    def renderer(self) -> Renderer:
        from renderers.efactura.ubl import invoice_xml
        from renderers.pdf import TEMPLATE_VERSION, render_invoice
        from renderers.sample_page import warm_up

        return Renderer(render_invoice, TEMPLATE_VERSION, warm_up, invoice_xml)

    @contextmanager
    def render_processes(self) -> Iterator[Any]:
        """`render_processes` processes that render PDFs, for the length of the `with` (one
        chunk); None when there is one, or when this process may have no children (a
        daemonic pool worker): render in the caller.

        They are forked (a few milliseconds: they start with the renderer already imported and
        warmed up, and need no entry point, where spawned ones would re-run the parent's main
        script), all at once, before the archive step starts its upload threads; they end with
        the `with`, so a task process never leaves one behind, and on their own if this process
        dies."""
        if not self._has_processes():
            yield None
            return
        import multiprocessing
        import os

        self.renderer.warm_up()
        pool = ProcessPoolExecutor(
            self.settings.render_processes,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_render_process_started,
            initargs=(os.getpid(),),
        )
        try:
            pool.submit(os.getpid).result()  # forks every process of the pool now
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    @contextmanager
    def validator_processes(self) -> Iterator[Any]:
        """Processes that validate e-Factura XMLs (`render_processes` of them); None when there
        is one, or when this process may have no children: validate in the caller. They are
        spawned, not forked: the schematron runs in Saxon's native runtime, whose threads a
        fork would not carry into the child.

        Unlike render processes they outlive the `with` and serve every later call in this
        process, ending with it: each starts Python, imports the validator and compiles the
        stylesheet (1.5 to 2 s for two), which a chunk of a thousand invoices would otherwise
        pay again, and `airflow dags test` (`make run`) runs every chunk's task in one process.
        A pool broken by a dead process is replaced on the next call."""
        if not self._has_processes():
            yield None
            return
        yield _kept_validators(self.settings.render_processes)

    def _has_processes(self) -> bool:
        """Whether work goes to processes beside this one: more than one is configured, and
        this process may have children (a daemonic pool worker may not)."""
        import multiprocessing

        return self.settings.render_processes > 1 and not multiprocessing.current_process().daemon

    @cached_property
    def efactura_client(self):
        """ANAF's e-Factura API, or None when INVOICES_EFACTURA_URL is unset. Its tokens start
        from the newest the ledger keeps (a refresh may have replaced the configured ones), and
        every refresh is kept there."""
        s = self.settings
        if not s.efactura_url:
            return None
        from notifiers.anaf import AnafClient, Tokens
        from storage.ledger import load_efactura_tokens, save_efactura_tokens

        kept = load_efactura_tokens(self.ledger)
        tokens = (
            Tokens(*kept) if kept else Tokens(s.efactura_access_token, s.efactura_refresh_token)
        )
        return AnafClient(
            s.efactura_url,
            s.efactura_cif or self.supplier.cui,
            tokens,
            token_url=s.efactura_token_url,
            client_id=s.efactura_client_id,
            client_secret=s.efactura_client_secret,
            timeout=s.efactura_timeout_seconds,
            save_tokens=lambda new: save_efactura_tokens(
                self.ledger, new.access_token, new.refresh_token, new.expires_at
            ),
        )

    @cached_property
    def email(self):
        """SMTP when a host is set, else `.eml` files under `$INVOICES_HOME/outbox/email/`."""
        from notifiers.email import EmailNotifier, EmlFileNotifier

        s = self.settings
        if s.smtp_host:
            return EmailNotifier(
                s.smtp_host,
                s.smtp_port,
                s.smtp_tls,
                s.smtp_username,
                s.smtp_password,
                s.mail_from,
            )
        return EmlFileNotifier(s.home / "outbox" / "email", s.mail_from)

    @cached_property
    def sms(self):
        """SNS or JSON lines under `$INVOICES_HOME/outbox/`, as `sms_transport` says: SNS paced at
        `sms_rate` (default `notifiers.sms.DEFAULT_RATE`), the file unpaced unless `sms_rate` is set."""
        import math

        from billing.domain.errors import ConfigurationError
        from notifiers.sms import DEFAULT_RATE, FileTransport, SmsNotifier, SnsTransport

        s = self.settings
        if s.sms_transport == "sns":
            transport = SnsTransport(self.sns_client, sender_id=s.sms_sender_id)
            return SmsNotifier(transport, s.sms_rate if s.sms_rate is not None else DEFAULT_RATE)
        if s.sms_transport == "file":
            transport = FileTransport(s.home / "outbox" / "sms.jsonl")
            return SmsNotifier(transport, s.sms_rate if s.sms_rate is not None else math.inf)
        raise ConfigurationError(
            f"INVOICES_SMS_TRANSPORT must be file or sns, not {s.sms_transport!r}"
        )

    # The customer's side: the self-service page and its phone-channel API.

    @cached_property
    def portal_keys(self):
        """The page's keys, derived from INVOICES_PORTAL_SECRET or, in the embedded setup, from
        a random key made once under INVOICES_HOME (`portal.key`, readable by its owner only)."""
        from billing.accounts.keys import Keys

        if self.settings.portal_secret:
            return Keys(self.settings.portal_secret.encode())
        from storage.files import read_or_create_secret

        return Keys(read_or_create_secret(self.settings.home / "portal.key"))

    @cached_property
    def api_keys(self):
        """The phone-channel API's shared secret (INVOICES_PORTAL_API_SECRET), or None: closed."""
        from billing.accounts.keys import Keys

        secret = self.settings.portal_api_secret
        return Keys(secret.encode()) if secret else None

    @cached_property
    def limiter(self):
        """Rate-limit counters: in Redis when INVOICES_REDIS_URL is set, else in the ledger."""
        from billing.accounts.limits import LedgerLimiter, RedisLimiter

        if self.settings.redis_url:
            import redis

            return RedisLimiter(redis.Redis.from_url(self.settings.redis_url))
        return LedgerLimiter(self.ledger)

    @cached_property
    def codes(self):
        from billing.accounts.codes import Codes

        return Codes(
            self.ledger, self.portal_keys, self.supplier.name, self.settings.otp_ttl_seconds
        )

    @cached_property
    def sessions(self):
        from billing.accounts.sessions import Sessions

        s = self.settings
        return Sessions(
            self.ledger, self.portal_keys, s.session_idle_seconds, s.session_max_seconds
        )


_validators: dict[int, Any] = {}  # processes -> the pool this process keeps


class _SpawnedPool(ProcessPoolExecutor):
    """Spawned processes that do not run this process's main script again.

    multiprocessing's spawn runs the parent's main script in each child (as `__mp_main__`), so
    that functions defined there can be found. In a task the main script is Airflow's command
    line, which fails in a child: a task process refuses Airflow's database, and importing
    Airflow reads that setting. The functions these processes run are the product's, imported
    by their module's name, so the child is started as if the parent had no main script: the
    main module's `__file__` and `__spec__` are set aside while `submit` starts a process (it
    starts them there, one a call, until the pool is full)."""

    def submit(self, fn, /, *args, **kwargs):
        main = sys.modules["__main__"]
        kept = {
            name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__
        }
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            return super().submit(fn, *args, **kwargs)
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(kept)


def _kept_validators(processes: int) -> Any:
    """This process's pool of `processes` spawned validator processes, started on first use
    (each process when the first XMLs reach it) and shut down when this process exits."""
    import atexit
    import multiprocessing
    import os

    pool = _validators.get(processes)
    if pool is not None and not getattr(pool, "_broken", False):
        return pool
    pool = _SpawnedPool(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_render_process_started,
        initargs=(os.getpid(),),
    )
    if not _validators:
        atexit.register(_stop_validators)
    _validators[processes] = pool
    return pool


def _stop_validators() -> None:
    for pool in _validators.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _validators.clear()


def _render_process_started(parent: int) -> None:
    """In each render process: a signal to stop ends it (the parent's handlers, inherited
    through fork, are a task runner's, not its own), Ctrl-C is the parent's to handle, and it
    ends at once if the parent is gone (its pipe would never close: it holds its own end)."""
    import os
    import signal
    import threading
    import time

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
