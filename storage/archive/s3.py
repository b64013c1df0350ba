"""The S3 backend of the invoice archive, selected by `INVOICES_ARCHIVE_URL=s3://bucket/prefix`.

Every object is written in a single PUT that carries its SHA-256 (`x-amz-checksum-sha256`), which
S3 recomputes before storing, so bytes damaged on the way are refused, never archived. The same
digest is kept as the `sha256` user metadata, and reads ask S3 for the stored checksum so botocore
verifies the bytes it returns.

`put_once` is a conditional write (`If-None-Match: *`): S3 creates the object only if the key has
none, so two workers archiving the same invoice cannot overwrite each other. When the key exists,
its SHA-256 decides: the same bytes are a no-op, other bytes raise ArchiveConflictError.

On a bucket with Object Lock, `put_once(..., retain_until=day)` locks the new version in
`lock_mode` (COMPLIANCE by default, `INVOICES_ARCHIVE_LOCK_MODE=GOVERNANCE` to change) until the
end of that day, UTC. A bucket without Object Lock stores the objects unlocked.

Clients: `S3Archive.from_url` builds one from boto3's own settings (`AWS_ENDPOINT_URL`,
`AWS_DEFAULT_REGION`, credentials) with `storage.s3_client.CLIENT_CONFIG` (adaptive retries, so
503 SlowDown and other 5xx answers are retried with backoff). Inside Airflow, pass a client built from a connection instead, e.g.
`S3Archive(S3Hook(aws_conn_id="invoices_archive").get_conn(), bucket, prefix)`, and give that
connection the same retry settings in its extra: `{"config_kwargs": {"retries": {"mode":
"adaptive", "max_attempts": 10}, "max_pool_connections": 32}}`.

Errors (mapped by `storage.s3_client.map_s3_errors`): a missing object is FileNotFoundError
(naming its s3:// URL); anything else S3 or the network refuses, once botocore's retries are
spent, is ArchiveError.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import mimetypes
import time
from collections.abc import Iterator
from dataclasses import replace as with_version
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from billing.domain.errors import ArchiveConflictError, ArchiveError, ConfigurationError
from storage.archive import DOWNLOAD_CHUNK, StoredObject, with_existed
from storage.s3_client import error_code, map_s3_errors, new_client

log = logging.getLogger(__name__)

LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
LOCK_MODE_VARIABLE = "INVOICES_ARCHIVE_LOCK_MODE"
MAX_LINK_SECONDS = 3600
LIFECYCLE_RULE_ID = "invoices-cold-after-view-window"

_NO_OBJECT_LOCK = frozenset(
    {"ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"}
)
_CONDITIONAL_ATTEMPTS = 5


class S3Archive:
    """Invoice archive objects under `prefix` in an S3 bucket (or any S3-compatible endpoint).

    Keys are relative to the prefix, as in `LocalArchive`. `client` is a ready boto3 S3 client;
    it is thread-safe, so one archive may serve a pool of threads.
    """

    def __init__(
        self, client: Any, bucket: str, prefix: str = "", lock_mode: str = "COMPLIANCE"
    ) -> None:
        if not bucket:
            raise ConfigurationError("an s3:// archive URL needs a bucket name: s3://bucket/prefix")
        mode = lock_mode.strip().upper()
        if mode not in LOCK_MODES:
            raise ConfigurationError(
                f"the archive's Object Lock mode ({LOCK_MODE_VARIABLE}) must be one of "
                f"{LOCK_MODES}, not {lock_mode!r}"
            )
        self.client = client
        self.bucket = bucket
        self.prefix = _clean_prefix(prefix)
        self.lock_mode = mode
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._object_lock: bool | None = None

    @classmethod
    def from_url(cls, url: str, client: Any = None, lock_mode: str = "COMPLIANCE") -> S3Archive:
        """The archive behind `s3://bucket/prefix`.

        Without `client`, one is built from boto3's own settings with `storage.s3_client`'s
        `CLIENT_CONFIG` (adaptive retries). `lock_mode` is the Object Lock mode of new versions (settings:
        `INVOICES_ARCHIVE_LOCK_MODE`).
        """
        if not url.startswith("s3://"):
            raise ConfigurationError(f"not an s3:// archive URL: {url!r}")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return cls(client if client is not None else new_client(), bucket, prefix, lock_mode)

    def put_once(self, key: str, data: bytes, retain_until: date | None = None) -> StoredObject:
        """Store `data` under `key` unless the key exists: the same bytes again return the stored
        object (its version included, `existed=True`) and write nothing; other bytes raise ArchiveConflictError.

        On a bucket with Object Lock, `retain_until` locks the new version in `lock_mode` through
        the whole of that day (until 00:00 UTC of the next day).
        """
        self._object_key(key)  # an invalid key fails before any request
        wanted = StoredObject(key, len(data), hashlib.sha256(data).hexdigest())
        lock = self._lock_arguments(retain_until)
        for attempt in range(_CONDITIONAL_ATTEMPTS):
            try:
                with map_s3_errors("store", self.describe(key)):
                    # If-None-Match: * lets S3 decide atomically; a HEAD before the PUT would
                    # leave a window in which two workers both see no object and the second
                    # overwrites.
                    response = self._put(key, data, IfNoneMatch="*", **lock)
            except ArchiveConflictError:
                # 412: the key exists; or 409: another conditional write to it is in flight.
                # Whatever is stored now decides; with nothing stored yet (the other write has
                # not settled, or the key was deleted since), write again.
                existing = self.head(key)
                if existing is not None:
                    return with_existed(self._same_or_conflict(existing, wanted))
                time.sleep(0.05 * 2**attempt)
                continue
            return with_version(wanted, version_id=response.get("VersionId"))
        raise ArchiveError(
            f"could not store {self.describe(key)}: other writers kept the key busy through "
            f"{_CONDITIONAL_ATTEMPTS} conditional writes; try again"
        )

    def replace(self, key: str, data: bytes) -> StoredObject:
        """Write `key` whatever it holds: only for run reports, never invoices or manifests."""
        with map_s3_errors("store", self.describe(key)):
            response = self._put(key, data)
        return StoredObject(
            key, len(data), hashlib.sha256(data).hexdigest(), response.get("VersionId")
        )

    def get(self, key: str, version_id: str | None = None) -> bytes:
        """The bytes of `key` (of that version, if given), verified against their stored
        checksum; FileNotFoundError when there is no such object."""
        out = io.BytesIO()
        self.download(key, out, version_id)
        return out.getvalue()

    def download(self, key: str, out: BinaryIO, version_id: str | None = None) -> None:
        """The bytes of `key` written into `out` a megabyte at a time: botocore checks the
        stored checksum when the stream ends, so a corrupted object raises before this returns
        (a BotoCoreError while reading is FlexibleChecksumError: the bytes do not match)."""
        with map_s3_errors("read", self.describe(key, version_id)):
            response = self.client.get_object(
                **self._address(key, version_id), ChecksumMode="ENABLED"
            )
            body = response["Body"]
            try:
                # Not `with body`: StreamingBody.__enter__ hands out the raw stream, which
                # skips botocore's checksum and length checks.
                for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                    out.write(chunk)
            finally:
                body.close()

    def head(self, key: str, version_id: str | None = None) -> StoredObject | None:
        """Size, sha256 and version of `key` (of that version, if given), or None if missing.

        The sha256 comes from S3's stored checksum, else from the `sha256` metadata this class
        writes; an object stored by other means without either is downloaded and hashed.
        """
        response = self._head(key, version_id)
        if response is None:
            return None
        version = response.get("VersionId") or version_id
        return StoredObject(
            key, response["ContentLength"], self._sha256(key, version, response), version
        )

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix` (relative to the archive's prefix), in S3's (lexicographic) order."""
        parts = prefix.split("/")
        if any(part in (".", "..") for part in parts):
            raise ValueError(f"invalid archive prefix {prefix!r}")
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix.lstrip("/")
        )
        with map_s3_errors(f"list {prefix!r} in", self.url):
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(root) :]

    def link(self, key: str, version_id: str | None = None, expires_in: int = 900) -> str:
        """A presigned GET URL for `key` (pinned to `version_id` if given), valid `expires_in`
        seconds, at most an hour. Treat it as a secret until it expires: never log it."""
        if not 0 < expires_in <= MAX_LINK_SECONDS:
            raise ValueError(
                f"download links expire within {MAX_LINK_SECONDS} s; {expires_in} was asked"
            )
        return self.client.generate_presigned_url(
            "get_object", Params=self._address(key, version_id), ExpiresIn=expires_in
        )

    def retention(self, key: str, version_id: str | None = None) -> tuple[str, date] | None:
        """The Object Lock of `key` (of that version, if given): its mode and the last day it
        covers in full (UTC), the `retain_until` given to `put_once`; None when not locked.

        Read from HEAD, which carries the lock for callers allowed `s3:GetObjectRetention`.
        """
        response = self._head(key, version_id)
        if response is None:
            raise FileNotFoundError(self.describe(key, version_id))
        mode, until = response.get("ObjectLockMode"), response.get("ObjectLockRetainUntilDate")
        if not mode or until is None:
            return None
        return mode, until.astimezone(UTC).date() - timedelta(days=1)

    def describe(self, key: str, version_id: str | None = None) -> str:
        """The s3:// URL of `key` (with its version, if given), for messages."""
        url = f"s3://{self.bucket}/{self._object_key(key)}"
        return f"{url}?versionId={version_id}" if version_id else url

    def _object_key(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"invalid archive key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _address(self, key: str, version_id: str | None) -> dict[str, str]:
        address = {"Bucket": self.bucket, "Key": self._object_key(key)}
        if version_id:
            address["VersionId"] = version_id
        return address

    def _put(self, key: str, data: bytes, **conditions: Any) -> dict[str, Any]:
        address = self._address(key, None)
        digest = hashlib.sha256(data).digest()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        # ChecksumAlgorithm sends x-amz-sdk-checksum-algorithm beside the value: S3 requires a
        # checksum header on PUTs that set a retention, and S3-compatible stores (moto among
        # them) only keep a checksum whose algorithm is named.
        return self.client.put_object(
            **address,
            Body=data,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
            Metadata={"sha256": digest.hex()},
            **conditions,
        )

    def _head(self, key: str, version_id: str | None) -> dict[str, Any] | None:
        try:
            with map_s3_errors("read", self.describe(key, version_id)):
                return self.client.head_object(
                    **self._address(key, version_id), ChecksumMode="ENABLED"
                )
        except FileNotFoundError:  # HEAD has no body: a missing key is a bare "404" code
            return None

    def _sha256(self, key: str, version_id: str | None, response: dict[str, Any]) -> str:
        checksum = response.get("ChecksumSHA256")
        # A multipart upload's checksum is of its parts ("<b64>-<n>"), not of the object.
        if checksum and "-" not in checksum and response.get("ChecksumType") != "COMPOSITE":
            return base64.b64decode(checksum).hex()
        recorded = response.get("Metadata", {}).get("sha256")
        if recorded:
            return recorded.lower()
        return hashlib.sha256(self.get(key, version_id)).hexdigest()

    def _lock_arguments(self, retain_until: date | None) -> dict[str, Any]:
        if retain_until is None or not self._has_object_lock():
            return {}
        # S3 keeps the version until this instant: the start of the day after the last day.
        until = datetime.combine(retain_until + timedelta(days=1), datetime.min.time(), UTC)
        return {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": until}

    def _has_object_lock(self) -> bool:
        if self._object_lock is None:
            with map_s3_errors("read the Object Lock setting of", self.url):
                try:
                    response = self.client.get_object_lock_configuration(Bucket=self.bucket)
                except ClientError as exc:
                    if error_code(exc) not in _NO_OBJECT_LOCK:
                        raise
                    response = None
            if response is None:
                log.warning(
                    "archive bucket %s has no Object Lock: invoices are stored without retention",
                    self.bucket,
                )
                self._object_lock = False
            else:
                config = response.get("ObjectLockConfiguration", {})
                self._object_lock = config.get("ObjectLockEnabled") == "Enabled"
        return self._object_lock

    def _same_or_conflict(self, existing: StoredObject, wanted: StoredObject) -> StoredObject:
        if existing.sha256 != wanted.sha256:
            raise ArchiveConflictError(
                f"{self.describe(existing.key)} already holds other bytes (stored sha256 "
                f"{existing.sha256[:12]}..., new {wanted.sha256[:12]}...); archived objects are "
                "never overwritten"
            )
        return existing


def apply_lifecycle(
    client: Any, bucket: str, prefix: str, days: int = 200, storage_class: str = "STANDARD_IA"
) -> dict[str, Any]:
    """Move invoices under `<prefix>/invoices/` to `storage_class` `days` after they are written.

    Invoices older than the six-invoice view window (six monthly cycles) are rarely read; they
    stay locked, only their storage class changes. The bucket's other lifecycle rules are kept;
    a rule with the same ID (`LIFECYCLE_RULE_ID`) is replaced. Returns the rule.
    """
    if days < 1:
        raise ValueError(f"days must be positive, not {days}")
    root = _clean_prefix(prefix)
    rule = {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": f"{root}/invoices/" if root else "invoices/"},
        "Transitions": [{"Days": days, "StorageClass": storage_class}],
    }
    with map_s3_errors("set the lifecycle of", f"s3://{bucket}"):
        try:
            current = client.get_bucket_lifecycle_configuration(Bucket=bucket)
        except ClientError as exc:
            if error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
            current = {}
        rules = [r for r in current.get("Rules", []) if r.get("ID") != LIFECYCLE_RULE_ID]
        # Putting a configuration resets settings it omits: keep the bucket's size threshold.
        keep = {
            name: current[name]
            for name in ("TransitionDefaultMinimumObjectSize",)
            if name in current
        }
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [*rules, rule]}, **keep
        )
    return rule


def _clean_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ConfigurationError(f"invalid archive prefix {prefix!r}")
    return prefix
