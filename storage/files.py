"""Helpers of the local-folder backends: safe object keys, and atomic, durable file writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def clean_key(key: str) -> str:
    """`key` with empty parts dropped; ValueError if it is empty or would leave its folder."""
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts) or not parts:
        raise ValueError(f"invalid object key {key!r}")
    return "/".join(parts)


def write_temp_beside(path: Path, data: bytes, mode: int | None = None) -> str:
    """Write `data` to a new temporary file in `path`'s folder, flushed to disk (so a rename or
    link of it is atomic and durable); returns its name. The caller renames or removes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp
