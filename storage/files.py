"""Helpers of the local-folder backends: safe object keys, and atomic, durable file writes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# A temporary file younger than this is never taken for a crashed writer's: it covers the
# instant between creating the file and locking it.
ABANDONED_AFTER_SECONDS = 60.0


def clean_key(key: str) -> str:
    """`key` with empty parts dropped; ValueError if it is empty or would leave its folder."""
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts) or not parts:
        raise ValueError(f"invalid object key {key!r}")
    return "/".join(parts)


@contextlib.contextmanager
def locked_temp_file(
    folder: Path, data: bytes, mode: int | None = None, prefix: str = "put."
) -> Iterator[str]:
    """A new file in `folder` holding `data`, flushed to disk, for the caller to link or rename
    into place (on the same filesystem, so that is atomic); removed when the block ends.

    The file stays locked (flock) by this process until then, so `remove_abandoned` in another
    process never takes it for a crashed writer's: the kernel drops the lock when a process
    dies, which is what marks a leftover.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix)
    with os.fdopen(fd, "wb") as out:
        try:
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
            yield tmp
        finally:
            # Unlinked before the lock goes (on close), so no cleaner sees it unlocked.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def remove_abandoned(folder: Path, older_than: float = ABANDONED_AFTER_SECONDS) -> list[str]:
    """Remove the files crashed writers left in `folder` (no process holds their lock, and they
    are older than `older_than` seconds); returns their names. Files of live writers, in this
    process or another, are left alone; a folder this process may not write is left as it is."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return removed
    now = time.time()
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone already, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            os.close(fd)
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def read_or_create_secret(path: Path, size: int = 32) -> bytes:
    """The random key kept in `path`, made (readable by its owner only) by whichever process
    comes first; every later reader, in any process, gets the same bytes."""
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the first process may still be writing it
            key = path.read_bytes()
            if len(key) >= size:
                return key
            time.sleep(0.02)
        raise ValueError(
            f"{path} holds fewer than {size} bytes: remove it to make a new key"
        ) from None
    with os.fdopen(fd, "wb") as file:
        key = secrets.token_bytes(size)
        file.write(key)
    return key
