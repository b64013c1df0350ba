"""The invoice archive: write-once objects with their size and sha256 (contract 4).

    invoices/<customer_id>/<invoice_number>.pdf   written once, never changed
    manifests/<cycle_id>.json                     every invoice of the cycle, hash-chained
    print/<cycle_id>/                             the paper print batch
    reports/<cycle_id>/<run_id>.json              run reports

`put_once` is the only way to write: the same bytes again is a no-op, other bytes under an
existing key raise ArchiveConflictError. The pipeline does not know which backend it has:
`open_archive(url)` picks one from `backends()` by the URL's scheme (`local.py`, `s3.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import BinaryIO, Protocol

from storage.schemes import backend_for


@dataclass(frozen=True)
class StoredObject:
    """An archived object. `existed` is True when `put_once` found these bytes already stored
    and wrote nothing (e.g. the upload of a run that crashed before recording it); it takes no
    part in comparisons."""

    key: str
    size: int
    sha256: str
    version_id: str | None = None
    existed: bool = field(default=False, compare=False)


def with_existed(stored: StoredObject) -> StoredObject:
    """`stored`, marked as found already in the archive by `put_once`."""
    return replace(stored, existed=True)


class Archive(Protocol):
    """What the pipeline needs of an archive; `LocalArchive` and `S3Archive` implement it."""

    url: str

    def put_once(self, key: str, data: bytes, retain_until: date | None = None) -> StoredObject:
        """Store `data` under `key` unless it is there: the same bytes again is a no-op (the
        stored object comes back with `existed=True`), other bytes raise ArchiveConflictError. `retain_until` is the legal retention of the object
        (Object Lock on S3; the local folder makes every object read-only)."""

    def replace(self, key: str, data: bytes) -> StoredObject:
        """Write `key` whatever it holds: only for run reports, never invoices or manifests."""

    def get(self, key: str, version_id: str | None = None) -> bytes: ...

    def download(self, key: str, out: BinaryIO, version_id: str | None = None) -> None:
        """Write the object's bytes into `out` a piece at a time, checked like `get`'s: for
        objects too large to hold (a cycle manifest lists every invoice of the cycle)."""

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        """Size, sha256 and version of a stored object, or None when there is none."""

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def link(self, key: str, version_id: str | None = None, expires_in: int = 900) -> str:
        """Where a person can download the object: a presigned URL (S3) or a file path."""


DOWNLOAD_CHUNK = 1 << 20  # bytes read at a time by `download`


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def backends() -> dict[str, type]:
    """The archive backends by URL scheme; a URL without one is a local folder. (Imported here,
    not at the top, because the backends import this interface.)"""
    from storage.archive.local import LocalArchive
    from storage.archive.s3 import S3Archive

    return {"file": LocalArchive, "s3": S3Archive}


def open_archive(url: str, s3_client=None, lock_mode: str = "COMPLIANCE") -> Archive:
    """The archive behind `url`: `s3://bucket/prefix` (with `s3_client`, or one built from
    boto3's own settings; Object Lock in `lock_mode`), else a local folder (the embedded
    default)."""
    backend = backend_for(backends(), url, "INVOICES_ARCHIVE_URL")
    return backend.from_url(url, client=s3_client, lock_mode=lock_mode)
