"""The local-folder archive: the embedded default (`INVOICES_ARCHIVE_URL=/path` or file://)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from billing.domain.errors import ArchiveConflictError
from storage.archive import StoredObject, sha256_hex
from storage.files import clean_key, write_temp_beside


class LocalArchive:
    """A folder. Objects are created atomically and exclusively, then made read-only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    @classmethod
    def from_url(cls, url: str, client: Any = None, lock_mode: str = "COMPLIANCE") -> LocalArchive:
        """The folder at `url` (a path or file:// URL); `client` and `lock_mode` do not apply."""
        return cls(Path(url.removeprefix("file://")))

    def _path(self, key: str) -> Path:
        try:
            return self.root / clean_key(key)
        except ValueError:
            raise ValueError(f"invalid archive key {key!r}") from None

    def put_once(self, key: str, data: bytes, retain_until: date | None = None) -> StoredObject:
        path = self._path(key)
        stored = StoredObject(key, len(data), sha256_hex(data))
        existing = self.head(key)
        if existing is not None:
            return self._same_or_conflict(existing, stored)
        tmp = write_temp_beside(path, data, mode=0o444)
        try:
            try:
                os.link(tmp, path)  # fails if another writer got there first: never overwrite
            except FileExistsError:
                return self._same_or_conflict(self.head(key), stored)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return stored

    def replace(self, key: str, data: bytes) -> StoredObject:
        """Write `key` whatever it holds: only for run reports, never invoices or manifests."""
        path = self._path(key)
        os.replace(write_temp_beside(path, data), path)
        return StoredObject(key, len(data), sha256_hex(data))

    @staticmethod
    def _same_or_conflict(existing: StoredObject, wanted: StoredObject) -> StoredObject:
        if existing.sha256 != wanted.sha256:
            raise ArchiveConflictError(
                f"{existing.key} already holds other bytes (sha256 {existing.sha256[:12]}..., "
                f"{existing.size} bytes); archived objects are never overwritten"
            )
        return existing

    def get(self, key: str, version_id: str | None = None) -> bytes:
        return self._path(key).read_bytes()

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return StoredObject(key, len(data), sha256_hex(data))

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    yield path.relative_to(self.root).as_posix()

    def link(self, key: str, version_id: str | None = None, expires_in: int = 900) -> str:
        return str(self._path(key))
