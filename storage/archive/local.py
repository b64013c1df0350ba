"""The local-folder archive: the embedded default (`INVOICES_ARCHIVE_URL=/path` or file://).

Each object is written to a temporary file in `<root>/.tmp/` (never beside its key, so nothing
half-written ever sits under `invoices/` or any other listed prefix), then linked into place:
the link is atomic and fails when the key exists, so an object is whole or absent. A writer
that crashes leaves at most a file in `.tmp/`, which the first write of the next archive opened
on the folder removes (a live writer's file, in any process, is locked and left alone).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from billing.domain.errors import ArchiveConflictError
from storage.archive import DOWNLOAD_CHUNK, StoredObject, sha256_hex, with_existed
from storage.files import clean_key, locked_temp_file, remove_abandoned

TEMP_FOLDER = ".tmp"  # under the root; no key starts with it (`list` leaves it out)


class LocalArchive:
    """A folder. Objects are created atomically and exclusively, then made read-only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self._temp = self.root / TEMP_FOLDER
        self._swept = False

    @classmethod
    def from_url(cls, url: str, client: Any = None, lock_mode: str = "COMPLIANCE") -> LocalArchive:
        """The folder at `url` (a path or file:// URL); `client` and `lock_mode` do not apply."""
        return cls(Path(url.removeprefix("file://")))

    def _path(self, key: str) -> Path:
        try:
            cleaned = clean_key(key)
        except ValueError:
            raise ValueError(f"invalid archive key {key!r}") from None
        if cleaned.split("/")[0] == TEMP_FOLDER:
            raise ValueError(f"invalid archive key {key!r}: {TEMP_FOLDER}/ holds temporary files")
        return self.root / cleaned

    def _temp_folder(self) -> Path:
        """Where new objects are written before they are linked into place; on the first write,
        what crashed writers left there is removed (not on open: auditors open read-only)."""
        if not self._swept:
            remove_abandoned(self._temp)
            self._swept = True
        return self._temp

    def put_once(self, key: str, data: bytes, retain_until: date | None = None) -> StoredObject:
        path = self._path(key)
        stored = StoredObject(key, len(data), sha256_hex(data))
        existing = self.head(key)
        if existing is not None:
            return with_existed(self._same_or_conflict(existing, stored))
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked_temp_file(self._temp_folder(), data, mode=0o444) as tmp:
            try:
                os.link(tmp, path)  # fails if another writer got there first: never overwrite
            except FileExistsError:
                return with_existed(self._same_or_conflict(self.head(key), stored))
        return stored

    def replace(self, key: str, data: bytes) -> StoredObject:
        """Write `key` whatever it holds: only for run reports, never invoices or manifests."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked_temp_file(self._temp_folder(), data) as tmp:
            os.replace(tmp, path)
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

    def download(self, key: str, out: BinaryIO, version_id: str | None = None) -> None:
        with self._path(key).open("rb") as source:
            shutil.copyfileobj(source, out, DOWNLOAD_CHUNK)

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return StoredObject(key, len(data), sha256_hex(data))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every file under `prefix`, hidden ones included (a stray file is an object an audit
        must see), except the temporary files in `.tmp/`."""
        base = self.root / prefix if prefix else self.root
        if base.is_dir():
            for path in _walk(base):
                key = path.relative_to(self.root).as_posix()
                if key.split("/")[0] != TEMP_FOLDER:
                    yield key

    def link(self, key: str, version_id: str | None = None, expires_in: int = 900) -> str:
        return str(self._path(key))


def _walk(folder: Path) -> Iterator[Path]:
    """The files under `folder` in the order `sorted(folder.rglob("*"))` gives them (a folder's
    entries by name, each subfolder's files where its name sorts), holding one folder's names
    at a time: the sorted rglob held a Path for every file and folder of the archive (about
    1 GB for a million invoices' PDFs)."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            yield from _walk(path)
        elif path.is_file():
            yield path
