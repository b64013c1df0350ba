"""Key-value object stores: a local folder, or an S3 bucket and prefix.

The pipeline reads the cycle export and keeps its staged chunks through this interface, so a
task neither knows nor cares which one it has. `open_store("s3://bucket/prefix")` gives S3 (boto3
takes endpoint, region and credentials from its own settings); any other URL is a local folder.
The backends (`local.py`, `s3.py`) are chosen from `backends()` by the URL's scheme.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from storage.schemes import backend_for


class BlobStore(Protocol):
    url: str

    def read_bytes(self, key: str) -> bytes: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def local_copy(self, key: str) -> contextlib.AbstractContextManager[Path]: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> Iterator[str]: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def describe(self, key: str) -> str: ...


def backends() -> dict[str, type]:
    """The store backends by URL scheme; a URL without one is a local folder. (Imported here,
    not at the top, because the backends import this interface.)"""
    from storage.blobs.local import LocalStore
    from storage.blobs.s3 import S3Store

    return {"file": LocalStore, "s3": S3Store}


def open_store(url: str, s3_client=None) -> BlobStore:
    """The store behind `url`: `s3://bucket/prefix` or a local folder (path or file:// URL)."""
    return backend_for(backends(), url, "a store URL").from_url(url, s3_client)
