"""The local-folder blob store: a path or file:// URL (the embedded default)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from storage.files import clean_key, locked_temp_file


class LocalStore:
    """A folder on a local (or mounted) file system. Writes are atomic (write, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    @classmethod
    def from_url(cls, url: str, client: Any = None) -> LocalStore:
        """The folder at `url` (a path or file:// URL); `client` does not apply."""
        return cls(Path(url.removeprefix("file://")))

    def path(self, key: str) -> Path:
        return self.root / clean_key(key)

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def open_read(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.exists():
            raise FileNotFoundError(str(path))
        yield path

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self.path(key)
        # beside its key (a hidden name, which `list` leaves out), then renamed into place
        with locked_temp_file(path.parent, data, prefix=f".{path.name}.") as tmp:
            os.replace(tmp, path)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*") if base.is_dir() else [base]):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.root / clean_key(prefix), ignore_errors=True)

    def describe(self, key: str) -> str:
        return str(self.path(key))
