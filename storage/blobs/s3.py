"""The S3 blob store: `s3://bucket/prefix`, for the cycle export and the staged chunks.

Clients and errors are those of every S3 backend (`storage.s3_client`): a missing object is
FileNotFoundError, anything else S3 or the network refuses is ArchiveError, while reading
through `open_read`'s stream too.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from storage.files import clean_key
from storage.s3_client import map_s3_errors, new_client


class S3Store:
    """Objects under `prefix` in an S3 bucket (or any S3-compatible endpoint)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if not bucket:
            raise ValueError("an s3:// URL needs a bucket name")
        self.client = client if client is not None else new_client()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def from_url(cls, url: str, client: Any = None) -> S3Store:
        """The store behind `s3://bucket/prefix`; without `client`, one from boto3's settings."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return cls(bucket, prefix, client=client)

    def object_key(self, key: str) -> str:
        key = clean_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return stream.read()

    def open_read(self, key: str) -> BinaryIO:
        where = self.describe(key)
        with map_s3_errors("read", where):
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        return io.BufferedReader(_StreamingRaw(body, where), buffer_size=1 << 20)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="invoices-") as tmp:
            path = Path(tmp) / Path(key).name
            with self.open_read(key) as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            yield path

    def write_bytes(self, key: str, data: bytes) -> None:
        with map_s3_errors("store", self.describe(key)):
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)

    def exists(self, key: str) -> bool:
        try:
            with map_s3_errors("read", self.describe(key)):
                self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except FileNotFoundError:  # HEAD has no body: a missing key is a bare 404
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        full = self.object_key(prefix) if prefix else self.prefix
        if full and not full.endswith("/") and prefix.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        with map_s3_errors(f"list {prefix!r} in", self.url):
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]

    def delete_prefix(self, prefix: str) -> None:
        keys = [self.object_key(k) for k in self.list(prefix)]
        with map_s3_errors(f"delete {prefix!r} in", self.url):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"


class _StreamingRaw(io.RawIOBase):
    """Adapts botocore's StreamingBody to io.RawIOBase so it can be buffered and decoded; a
    connection lost mid-read is ArchiveError naming the object, like every other S3 failure."""

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with map_s3_errors("read", self._where):
            data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()
