"""`FileTransport`: the embedded setup's SMS outbox, one JSON line per message.

The file is `$INVOICES_HOME/outbox/sms.jsonl` (`billing.runtime` names it). Each key is written
once, even by several processes sharing the file (an exclusive `flock` around each append).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from billing.domain.gsm import segments
from billing.domain.notices import NoticeStatus
from notifiers.base import DeliveryResult, Outgoing

log = logging.getLogger(__name__)


class FileTransport:
    """Appends one JSON line per message to `path`: {"key", "recipient", "text", "encoding",
    "segments"}. A key already in the file counts as sent and is not written again, so re-runs
    (and several processes sharing the file) write each key once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._lines: dict[str, int] = {}  # key -> its line number in the file
        self._read_to = 0  # bytes of the file already read into _lines
        self._line_count = 0

    def send(self, message: Outgoing) -> DeliveryResult:
        """Write `message` unless its key is in the file; "failed-retryable" if the file cannot
        be written."""
        encoding, count = segments(message.text)
        record = {
            "key": message.key,
            "recipient": message.recipient,
            "text": message.text,
            "encoding": encoding,
            "segments": count,
        }
        try:
            with self._lock, self._locked() as file:
                self._read_new_lines(file)
                if message.key not in self._lines:
                    file.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
                    file.flush()
                    self._read_new_lines(file)
                line = self._lines[message.key]
        except OSError as exc:
            return DeliveryResult(
                message.key, NoticeStatus.FAILED_RETRYABLE, error=f"{self.path}: {exc}"
            )
        return DeliveryResult(
            message.key, NoticeStatus.SENT, provider_message_id=f"{self.path.name}:{line}"
        )

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as file:
            # Another process (a parallel Airflow task) may append to the same file.
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                yield file
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    def _read_new_lines(self, file: IO[bytes]) -> None:
        if os.fstat(file.fileno()).st_size < self._read_to:
            # The file was replaced or emptied (an outbox cleared by hand): forget what it held.
            self._lines.clear()
            self._read_to = self._line_count = 0
        file.seek(self._read_to)
        data = file.read()
        if data and not data.endswith(b"\n"):
            # A line cut short by a crash: end it so the next record starts on its own line.
            file.write(b"\n")
            file.flush()
            data += b"\n"
        for raw in data.split(b"\n")[:-1]:
            self._line_count += 1
            try:
                key = json.loads(raw)["key"]
            except (ValueError, KeyError, TypeError):
                log.warning("%s: line %d is not an SMS record", self.path, self._line_count)
                continue
            self._lines.setdefault(key, self._line_count)
        self._read_to += len(data)
