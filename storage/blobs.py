"""Key-value object stores: a local folder, or an S3 bucket and prefix.

The pipeline reads the cycle export and keeps its staged chunks through this interface, so a
task neither knows nor cares which one it has. `open_store("s3://bucket/prefix")` gives S3 (boto3
takes endpoint, region and credentials from its own settings); any other URL is a local folder.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol


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


def open_store(url: str, s3_client=None) -> BlobStore:
    """The store behind `url`: `s3://bucket/prefix` or a local folder (path or file:// URL)."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Store(bucket, prefix, client=s3_client)
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalStore(Path(url))


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


def clean_key(key: str) -> str:
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts) or not parts:
        raise ValueError(f"invalid object key {key!r}")
    return "/".join(parts)


class LocalStore:
    """A folder on a local (or mounted) file system. Writes are atomic (write, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

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
        tmp = write_temp_beside(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

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


class S3Store:
    """Objects under `prefix` in an S3 bucket (or any S3-compatible endpoint)."""

    def __init__(self, bucket: str, prefix: str = "", client=None) -> None:
        if not bucket:
            raise ValueError("an s3:// URL needs a bucket name")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def object_key(self, key: str) -> str:
        key = clean_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def read_bytes(self, key: str) -> bytes:
        return self.open_read(key).read()

    def open_read(self, key: str) -> BinaryIO:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(self.describe(key)) from None
        return io.BufferedReader(_StreamingRaw(body), buffer_size=1 << 20)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="invoices-") as tmp:
            path = Path(tmp) / Path(key).name
            with self.open_read(key) as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            yield path

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            # HEAD has no body: a missing key is a bare 404 (403 without s3:ListBucket).
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        full = self.object_key(prefix) if prefix else self.prefix
        if full and not full.endswith("/") and prefix.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        ):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    def delete_prefix(self, prefix: str) -> None:
        keys = [self.object_key(k) for k in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"


class _StreamingRaw(io.RawIOBase):
    """Adapts botocore's StreamingBody to io.RawIOBase so it can be buffered and decoded."""

    def __init__(self, body) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()
