"""S3Archive against moto's S3 server over real HTTP: write-once, verified, locked, linkable."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import threading
import uuid
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from billing.domain.errors import ArchiveConflictError, ArchiveError, ConfigurationError
from billing.runtime import Runtime
from storage.archive import sha256_hex
from storage.archive.s3 import LIFECYCLE_RULE_ID, S3Archive, apply_lifecycle

INVOICE = "invoices/C0001/OR00000001.pdf"
PDF = b"%PDF-1.4 invoice OR00000001 for C0001\n%%EOF\n"
LAST_DAY = date(2036, 12, 31)


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def locked_bucket(aws_env):
    """A bucket with Object Lock (hence versioning) on the moto server: (client, name)."""
    client = boto3.client("s3")
    name = f"invoices-locked-{uuid.uuid4().hex[:10]}"
    client.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
        ObjectLockEnabledForBucket=True,
    )
    return client, name


@pytest.fixture
def archive(locked_bucket) -> S3Archive:
    client, name = locked_bucket
    return S3Archive(client, name, "archive")


def versions_of(archive: S3Archive, key: str) -> list[dict]:
    full = f"{archive.prefix}/{key}"
    listing = archive.client.list_object_versions(Bucket=archive.bucket, Prefix=full)
    return [v for v in listing.get("Versions", []) if v["Key"] == full]


def test_put_once_stores_the_bytes_with_their_checksum(archive):
    stored = archive.put_once(INVOICE, PDF, retain_until=LAST_DAY)

    head = archive.client.head_object(
        Bucket=archive.bucket, Key=f"archive/{INVOICE}", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == b64_sha256(PDF)
    assert head["Metadata"]["sha256"] == sha256_hex(PDF)
    assert head["ContentType"] == "application/pdf"
    assert (stored.key, stored.size, stored.sha256) == (INVOICE, len(PDF), sha256_hex(PDF))
    assert stored.version_id == head["VersionId"]
    assert archive.head(INVOICE) == stored
    assert archive.get(INVOICE) == PDF


# moto 5.2.5 stores x-amz-checksum-sha256 as sent; S3 recomputes it and answers 400 BadDigest.
@pytest.mark.xfail(strict=True, reason="moto does not verify x-amz-checksum-sha256 on PUT")
def test_the_server_refuses_bytes_that_do_not_match_their_checksum(locked_bucket):
    client, bucket = locked_bucket
    with pytest.raises(ClientError):
        client.put_object(
            Bucket=bucket,
            Key="archive/invoices/C0001/damaged.pdf",
            Body=PDF,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64_sha256(b"other bytes"),
        )


def test_get_refuses_an_object_whose_bytes_do_not_match_its_checksum(archive):
    try:
        archive.client.put_object(
            Bucket=archive.bucket,
            Key="archive/invoices/C0001/damaged.pdf",
            Body=PDF,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64_sha256(b"other bytes"),
        )
    except ClientError:
        pytest.skip("the server verifies checksums on PUT: no damaged object can be stored")
    with pytest.raises(ArchiveError, match="damaged.pdf"):
        archive.get("invoices/C0001/damaged.pdf")
    with pytest.raises(ArchiveError, match="damaged.pdf"):  # streamed, checked at the end
        archive.download("invoices/C0001/damaged.pdf", io.BytesIO())


def test_download_streams_exactly_the_version_get_returns(archive):
    large = bytes(range(256)) * 20_000  # 5 MB: several pieces
    first = archive.put_once("manifests/2026-11.json", large)
    out = io.BytesIO()
    archive.download("manifests/2026-11.json", out, first.version_id)
    assert out.getvalue() == archive.get("manifests/2026-11.json", first.version_id) == large
    with pytest.raises(FileNotFoundError):
        archive.download("manifests/2026-12.json", io.BytesIO())


def test_the_same_bytes_again_write_nothing(archive):
    first = archive.put_once(INVOICE, PDF, retain_until=LAST_DAY)
    again = archive.put_once(INVOICE, PDF, retain_until=LAST_DAY)

    assert again == first
    assert [v["VersionId"] for v in versions_of(archive, INVOICE)] == [first.version_id]


def test_other_bytes_are_refused_and_the_invoice_is_unchanged(archive):
    first = archive.put_once(INVOICE, PDF, retain_until=LAST_DAY)
    other = PDF.replace(b"C0001", b"C0002")

    with pytest.raises(ArchiveConflictError) as refused:
        archive.put_once(INVOICE, other, retain_until=LAST_DAY)

    message = str(refused.value)
    assert f"s3://{archive.bucket}/archive/{INVOICE} already holds other bytes" in message
    assert sha256_hex(PDF)[:12] in message and sha256_hex(other)[:12] in message
    assert archive.get(INVOICE) == PDF
    assert [v["VersionId"] for v in versions_of(archive, INVOICE)] == [first.version_id]


def test_every_object_on_a_locked_bucket_is_kept_through_its_last_day(archive):
    keys = [INVOICE, "invoices/C0002/OR00000002.pdf", "manifests/2026-11.json"]
    stored = [archive.put_once(key, key.encode(), retain_until=LAST_DAY) for key in keys]

    for item in stored:
        assert archive.retention(item.key, item.version_id) == ("COMPLIANCE", LAST_DAY)
        head = archive.client.head_object(Bucket=archive.bucket, Key=f"archive/{item.key}")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == datetime(2037, 1, 1, tzinfo=UTC)

    with pytest.raises(ClientError, match="AccessDenied"):
        archive.client.delete_object(
            Bucket=archive.bucket, Key=f"archive/{INVOICE}", VersionId=stored[0].version_id
        )
    assert archive.get(INVOICE, stored[0].version_id) == INVOICE.encode()


def test_the_lock_mode_comes_from_the_settings(locked_bucket, settings_for):
    _, bucket = locked_bucket
    settings = settings_for(archive_url=f"s3://{bucket}/archive", archive_lock_mode="governance")
    archive = Runtime(settings).archive

    stored = archive.put_once(INVOICE, PDF, retain_until=LAST_DAY)

    assert isinstance(archive, S3Archive) and archive.url == f"s3://{bucket}/archive"
    assert archive.retention(INVOICE, stored.version_id) == ("GOVERNANCE", LAST_DAY)
    with pytest.raises(ConfigurationError, match="INVOICES_ARCHIVE_LOCK_MODE"):
        settings_for(archive_lock_mode="forever")


def test_a_bucket_without_object_lock_stores_unlocked_objects(s3_bucket):
    client, bucket = s3_bucket
    archive = S3Archive(client, bucket)

    stored = archive.put_once(INVOICE, PDF, retain_until=LAST_DAY)

    assert archive.get(INVOICE) == PDF and archive.head(INVOICE) == stored
    assert archive.retention(INVOICE) is None


def test_a_link_downloads_exactly_the_version_it_names(archive):
    report = "reports/2026-11/run-1.json"
    old = archive.replace(report, b'{"run": 1}')
    new = archive.replace(report, b'{"run": 1, "finished": true}')
    invoice = archive.put_once(INVOICE, PDF, retain_until=LAST_DAY)

    assert old.version_id != new.version_id
    assert httpx.get(archive.link(report, old.version_id)).content == b'{"run": 1}'
    assert httpx.get(archive.link(report)).content == b'{"run": 1, "finished": true}'
    link = archive.link(INVOICE, invoice.version_id)
    assert "X-Amz-Expires=900" in link
    assert httpx.get(link).content == PDF


@pytest.mark.parametrize("seconds", [3601, 0, -1])
def test_links_expire_within_an_hour(archive, seconds):
    with pytest.raises(ValueError, match="expire within 3600 s"):
        archive.link(INVOICE, expires_in=seconds)


def test_get_head_and_list_work_relative_to_the_prefix(locked_bucket):
    client, bucket = locked_bucket
    archive = S3Archive(client, bucket, "/arch/")
    neighbour = S3Archive(client, bucket, "archive")
    for key in (INVOICE, "invoices/C0002/OR00000002.pdf", "manifests/2026-11.json"):
        archive.put_once(key, key.encode())
    neighbour.put_once(INVOICE, PDF)

    assert list(archive.list("invoices/")) == [INVOICE, "invoices/C0002/OR00000002.pdf"]
    assert len(list(archive.list())) == 3
    assert list(archive.list("print/")) == []
    assert archive.get(INVOICE) == INVOICE.encode() and neighbour.get(INVOICE) == PDF
    assert archive.head("invoices/C0009/OR00000009.pdf") is None
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/arch/invoices/C0009/OR9.pdf"):
        archive.get("invoices/C0009/OR9.pdf")
    with pytest.raises(FileNotFoundError):
        archive.get(INVOICE, version_id="no-such-version")


@pytest.mark.parametrize("key", ["../x.pdf", "invoices/../../x", "", "/", "/x", "a//b", "a/"])
def test_keys_are_plain_relative_paths(key):
    archive = S3Archive(client=None, bucket="invoices", prefix="archive")
    with pytest.raises(ValueError, match="invalid archive key"):
        archive.put_once(key, b"x")


@pytest.mark.parametrize(
    "url", [pytest.param("s3://", id="no-bucket"), pytest.param("s3://b/a/../x", id="dotdot")]
)
def test_a_malformed_url_is_a_configuration_error(url, aws_env):
    with pytest.raises(ConfigurationError):
        S3Archive.from_url(url)


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def s3_error(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{code} (from the test proxy)</Message><RequestId>T1</RequestId></Error>"
    ).encode()


class FaultyS3Proxy(ThreadingHTTPServer):
    """Forwards to moto, except that the first PUTs get the scripted (status, S3 error) answers."""

    daemon_threads = True

    def __init__(self, upstream: str, faults: list[tuple[int, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlsplit(upstream)
        self.faults = list(faults)
        self.puts = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue handled as botocore expects
    server: FaultyS3Proxy

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.puts += 1
            fault = self.server.faults.pop(0) if self.server.faults else None
        if fault:
            status, code = fault
            self._reply(status, {"Content-Type": "application/xml"}, s3_error(code))
        else:
            self._forward(body)

    def do_GET(self) -> None:
        self._forward(b"")

    do_HEAD = do_DELETE = do_GET

    def _forward(self, body: bytes) -> None:
        upstream = self.server.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
            if self.command == "HEAD":  # no body, but the object's length
                headers["Content-Length"] = response.getheader("Content-Length", "0")
            self._reply(response.status, headers, data)
        finally:
            conn.close()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def archive_behind_proxy(s3_bucket, moto_endpoint, monkeypatch):
    """Starts a FaultyS3Proxy with the given faults; returns (proxy, archive built by from_url)."""
    servers = []

    def start(faults: list[tuple[int, str]]) -> tuple[FaultyS3Proxy, S3Archive]:
        proxy = FaultyS3Proxy(moto_endpoint, faults)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        servers.append((proxy, thread))
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        return proxy, S3Archive.from_url(f"s3://{s3_bucket[1]}/archive")

    yield start
    for proxy, thread in servers:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)


@pytest.mark.timeout(20)
def test_throttled_writes_are_retried_with_backoff(archive_behind_proxy, s3_bucket):
    client, bucket = s3_bucket
    proxy, archive = archive_behind_proxy([(503, "SlowDown"), (503, "SlowDown")])

    stored = archive.put_once(INVOICE, PDF)

    assert proxy.puts == 3
    assert stored.sha256 == sha256_hex(PDF)
    assert client.get_object(Bucket=bucket, Key=f"archive/{INVOICE}")["Body"].read() == PDF
    assert archive.client.meta.config.max_pool_connections == 32


@pytest.mark.timeout(20)
def test_a_concurrent_conditional_write_is_waited_out(archive_behind_proxy):
    proxy, archive = archive_behind_proxy([(409, "ConditionalRequestConflict")])

    assert archive.put_once(INVOICE, PDF).sha256 == sha256_hex(PDF)
    assert proxy.puts == 2
    assert archive.get(INVOICE) == PDF


@pytest.mark.timeout(20)
def test_a_refused_write_is_an_archive_error_naming_the_object(archive_behind_proxy, s3_bucket):
    proxy, archive = archive_behind_proxy([(403, "AccessDenied")])

    with pytest.raises(
        ArchiveError, match=f"store s3://{s3_bucket[1]}/archive/{INVOICE}: AccessDenied"
    ):
        archive.put_once(INVOICE, PDF)
    assert proxy.puts == 1
    assert archive.head(INVOICE) is None


def test_apply_lifecycle_adds_its_rule_and_keeps_the_others(s3_bucket):
    client, bucket = s3_bucket
    expire_tmp = {
        "ID": "expire-tmp",
        "Status": "Enabled",
        "Filter": {"Prefix": "tmp/"},
        "Expiration": {"Days": 3},
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [expire_tmp]}
    )

    apply_lifecycle(client, bucket, "archive")
    rule = apply_lifecycle(client, bucket, "archive/", days=250, storage_class="GLACIER_IR")

    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert sorted(rules) == sorted(["expire-tmp", LIFECYCLE_RULE_ID])
    assert rules["expire-tmp"]["Expiration"] == {"Days": 3}
    assert rules[LIFECYCLE_RULE_ID]["Filter"] == {"Prefix": "archive/invoices/"}
    assert rules[LIFECYCLE_RULE_ID]["Transitions"] == [{"Days": 250, "StorageClass": "GLACIER_IR"}]
    assert rule["Transitions"] == rules[LIFECYCLE_RULE_ID]["Transitions"]
