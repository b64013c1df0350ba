"""The invoice archive: write-once objects with their size and sha256 (contract 4).

    invoices/<customer_id>/<invoice_number>.pdf   written once, never changed
    manifests/<cycle_id>.json                     every invoice of the cycle, hash-chained
    print/<cycle_id>/                             the paper print batch
    reports/<cycle_id>/<run_id>.json              run reports

`put_once` is the only way to write: the same bytes again is a no-op, other bytes under an
existing key raise ArchiveConflictError. The pipeline does not know which backend it has.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from billing.domain.errors import ArchiveConflictError
from storage.blobs import clean_key, write_temp_beside


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    version_id: str | None = None


class Archive(Protocol):
    """What the pipeline needs of an archive; `LocalArchive` and `S3Archive` implement it."""

    url: str

    def put_once(self, key: str, data: bytes, retain_until: date | None = None) -> StoredObject:
        """Store `data` under `key` unless it is there: the same bytes again is a no-op, other
        bytes raise ArchiveConflictError. `retain_until` is the legal retention of the object
        (Object Lock on S3; the local folder makes every object read-only)."""

    def replace(self, key: str, data: bytes) -> StoredObject:
        """Write `key` whatever it holds: only for run reports, never invoices or manifests."""

    def get(self, key: str, version_id: str | None = None) -> bytes: ...

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        """Size, sha256 and version of a stored object, or None when there is none."""

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def link(self, key: str, version_id: str | None = None, expires_in: int = 900) -> str:
        """Where a person can download the object: a presigned URL (S3) or a file path."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_archive(url: str, s3_client=None, lock_mode: str = "COMPLIANCE") -> Archive:
    """The archive behind `url`: `s3://bucket/prefix` (with `s3_client`, or one built from
    boto3's own settings; Object Lock in `lock_mode`), else a local folder (the embedded
    default)."""
    if url.startswith("s3://"):
        from storage.s3_archive import S3Archive

        return S3Archive.from_url(url, client=s3_client, lock_mode=lock_mode)
    return LocalArchive(Path(url.removeprefix("file://")))


class LocalArchive:
    """A folder. Objects are created atomically and exclusively, then made read-only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

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
        """Write `key` whatever it holds: only for run reports, never for invoices or manifests."""
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
