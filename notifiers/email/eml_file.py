"""`EmlFileNotifier`: the embedded setup's e-mail channel, each message an `.eml` file.

A file is written once, atomically (`link()` refuses an existing name); a key whose file exists
counts as sent, so a re-run writes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from billing.domain.errors import PermanentDeliveryError
from billing.domain.notices import NoticeStatus
from notifiers.base import DeliveryResult, Outgoing, ResultCallback
from notifiers.email.message import build_message, parse_sender

logger = logging.getLogger(__name__)


class EmlFileNotifier:
    """The embedded default: each message becomes `<outbox_dir>/<key, ':' as '_'>.eml`.

    A file is written once (atomically); when it already exists the notice counts as sent.
    """

    def __init__(self, outbox_dir: Path | str, mail_from: str = "facturi@example.ro") -> None:
        parse_sender(mail_from)
        self.outbox_dir = Path(outbox_dir)
        self.mail_from = mail_from

    def __repr__(self) -> str:
        return f"EmlFileNotifier(outbox_dir={str(self.outbox_dir)!r})"

    def path_for(self, key: str) -> Path:
        """The file of the notice with idempotency key `key`."""
        name = key.replace(":", "_")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise PermanentDeliveryError(f"key {key!r} cannot name a file")
        return self.outbox_dir / f"{name}.eml"

    def send(
        self, messages: Sequence[Outgoing], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """Write every message not written yet; one result per message, in order, each also
        handed to `on_result` once written."""
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for outgoing in messages:
            results.append(self._write(outgoing))
            if on_result is not None:
                on_result(results[-1])
        return results

    async def send_all(
        self, messages: Sequence[Outgoing], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """`send` for async callers (the writes run in a thread)."""
        return await asyncio.to_thread(self.send, messages, on_result)

    def _write(self, outgoing: Outgoing) -> DeliveryResult:
        try:
            path = self.path_for(outgoing.key)
            message = build_message(outgoing, self.mail_from)
        except PermanentDeliveryError as exc:
            logger.warning("e-mail %s: failed-permanent: %s", outgoing.key, exc)
            return DeliveryResult(outgoing.key, NoticeStatus.FAILED_PERMANENT, error=str(exc))
        mid = str(message["Message-ID"])
        if path.exists():
            logger.info("e-mail %s: already written", outgoing.key)
            return DeliveryResult(outgoing.key, NoticeStatus.SENT, provider_message_id=mid)
        descriptor, temporary = tempfile.mkstemp(dir=self.outbox_dir, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(message.as_bytes())
                file.flush()
                os.fsync(file.fileno())
            # link() refuses an existing name: of two concurrent writers, one wins, whole.
            os.link(temporary, path)
        except FileExistsError:
            logger.info("e-mail %s: already written", outgoing.key)
        except OSError as exc:
            logger.warning("e-mail %s: failed-retryable: %s", outgoing.key, exc.strerror)
            return DeliveryResult(
                outgoing.key, NoticeStatus.FAILED_RETRYABLE, error=str(exc.strerror)
            )
        else:
            logger.info("e-mail %s: written", outgoing.key)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return DeliveryResult(outgoing.key, NoticeStatus.SENT, provider_message_id=mid)
