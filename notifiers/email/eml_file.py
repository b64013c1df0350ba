"""`EmlFileNotifier`: the embedded setup's e-mail channel, each message an `.eml` file.

A file is written once, atomically (`link()` refuses an existing name) and durably (synced to
disk before it gets its name); a key whose file exists counts as sent, so a re-run writes
nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from billing.domain.errors import PermanentDeliveryError
from billing.domain.notices import NoticeStatus
from notifiers.base import DeliveryResult, Outgoing, ResultCallback
from notifiers.email.message import parse_sender, render_message

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
        handed to `on_result` once its file is in place and on disk.

        Messages go in groups of `GROUP`: each group's files are written under temporary names,
        made durable by one sync of the file system (not one fsync per file), and only then
        linked under their names, so a name never points at a file a power cut could empty."""
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for start in range(0, len(messages), GROUP):
            written = [self._write(outgoing) for outgoing in messages[start : start + GROUP]]
            if any(isinstance(item, _Written) for item in written):
                _sync_file_system(self.outbox_dir)
            for item in written:
                results.append(self._publish(item) if isinstance(item, _Written) else item)
                if on_result is not None:
                    on_result(results[-1])
        return results

    async def send_all(
        self, messages: Sequence[Outgoing], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """`send` for async callers (the writes run in a thread)."""
        return await asyncio.to_thread(self.send, messages, on_result)

    def _write(self, outgoing: Outgoing) -> _Written | DeliveryResult:
        """The message under a temporary name; or its final result (unusable, already there,
        or a write that failed)."""
        try:
            path = self.path_for(outgoing.key)
            message = render_message(outgoing, self.mail_from)
        except PermanentDeliveryError as exc:
            logger.warning("e-mail %s: failed-permanent: %s", outgoing.key, exc)
            return DeliveryResult(outgoing.key, NoticeStatus.FAILED_PERMANENT, error=str(exc))
        written = _Written(outgoing.key, path, "", message.message_id)
        if path.exists():
            return self._publish(written)
        try:
            descriptor, temporary = tempfile.mkstemp(dir=self.outbox_dir, prefix=".", suffix=".tmp")
            with os.fdopen(descriptor, "wb") as file:
                file.write(message.data)
        except OSError as exc:
            return self._retryable(outgoing.key, exc)
        return _Written(outgoing.key, path, temporary, message.message_id)

    def _publish(self, written: _Written) -> DeliveryResult:
        """Link the synced temporary file under the message's name (link() refuses an existing
        name: of two concurrent writers, one wins, whole)."""
        sent = DeliveryResult(
            written.key, NoticeStatus.SENT, provider_message_id=written.message_id
        )
        if not written.temporary:
            logger.info("e-mail %s: already written", written.key)
            return sent
        try:
            os.link(written.temporary, written.path)
        except FileExistsError:
            logger.info("e-mail %s: already written", written.key)
        except OSError as exc:
            return self._retryable(written.key, exc)
        else:
            logger.info("e-mail %s: written", written.key)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(written.temporary)
        return sent

    @staticmethod
    def _retryable(key: str, exc: OSError) -> DeliveryResult:
        logger.warning("e-mail %s: failed-retryable: %s", key, exc.strerror)
        return DeliveryResult(key, NoticeStatus.FAILED_RETRYABLE, error=str(exc.strerror))


GROUP = 100  # messages made durable by one sync


@dataclass(frozen=True)
class _Written:
    key: str
    path: Path
    temporary: str  # "" when the file was there already
    message_id: str


def _sync_file_system(folder: Path) -> None:
    """Flush every written file of `folder`'s file system to disk: syncfs(2) where the C library
    has it, else a sync of every file system."""
    libc = _libc()
    if libc is not None:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            if libc.syncfs(descriptor) == 0:
                return
        finally:
            os.close(descriptor)
    os.sync()


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
