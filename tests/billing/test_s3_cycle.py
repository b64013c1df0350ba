"""A whole cycle on S3 (moto's server, real HTTP): source, staging and an Object Lock archive.
Retention on every invoice, links to exact versions, audit verify naming tampered objects."""

from __future__ import annotations

import json
import uuid
from datetime import date

import boto3
import httpx
import pytest

from billing import pipeline
from billing.runtime import Runtime
from billing.stages.audit import verify_cycle
from billing.stages.view import last_invoices
from storage.archive import open_archive, sha256_hex
from storage.ledger import open_ledger
from tests.support.paths import SAMPLES

REGION = {"LocationConstraint": "eu-central-1"}


@pytest.fixture
def s3_cycle(aws_env, settings_for):
    client = boto3.client("s3")
    work, locked = f"work-{uuid.uuid4().hex[:8]}", f"archive-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=work, CreateBucketConfiguration=REGION)
    client.create_bucket(
        Bucket=locked, CreateBucketConfiguration=REGION, ObjectLockEnabledForBucket=True
    )
    for cycle in ("2026-10", "2026-11"):
        for path in (SAMPLES / cycle).iterdir():
            client.upload_file(str(path), work, f"exports/{cycle}/{path.name}")
    settings = settings_for(
        source_url=f"s3://{work}/exports",
        staging_url=f"s3://{work}/staging",
        archive_url=f"s3://{locked}/billing",
        chunk_size=120,
    )
    reports = [pipeline.run_cycle(Runtime(settings), cycle) for cycle in ("2026-10", "2026-11")]
    return client, locked, settings, reports


def test_cycle_on_s3_is_locked_verifiable_and_viewable(s3_cycle):
    client, bucket, settings, reports = s3_cycle
    engine, archive = open_ledger(settings.ledger_url), open_archive(settings.archive_url)
    assert all(r["pdfs_archived"] == r["invoices_issued"] > 0 for r in reports)
    assert verify_cycle(engine, archive, "2026-10") == []
    assert verify_cycle(engine, archive, "2026-11") == []

    keys = list(archive.list("invoices/"))
    assert len(keys) == sum(r["pdfs_archived"] for r in reports)
    for key in keys[:20]:
        assert archive.retention(key) == ("COMPLIANCE", date(2036, 12, 31))
    assert archive.retention("manifests/2026-11.json") == ("COMPLIANCE", date(2036, 12, 31))

    view = last_invoices(engine, archive, "C0000002")
    assert [v["cycle_id"] for v in view] == ["2026-11", "2026-10"]
    for item in view:
        assert "versionId=" in item["url"]
        body = httpx.get(item["url"], timeout=10).content
        assert sha256_hex(body) == item["sha256"]

    def archived_versions() -> list[str]:
        listed = client.list_object_versions(Bucket=bucket)["Versions"]
        return sorted(v["VersionId"] for v in listed if "/reports/" not in v["Key"])

    before = archived_versions()
    again = pipeline.run_cycle(Runtime(settings), "2026-11")
    assert (again["invoices_issued"], again["pdfs_archived"]) == (0, 0)
    assert archived_versions() == before  # no second version of any invoice or manifest


def test_tampering_behind_the_products_back_is_named(s3_cycle):
    client, bucket, settings, _ = s3_cycle
    engine, archive = open_ledger(settings.ledger_url), open_archive(settings.archive_url)
    entries = json.loads(archive.get("manifests/2026-11.json"))["invoices"]
    replaced, hidden = entries[0], entries[1]
    # Object Lock keeps the archived versions, but a writer can still add versions on top
    client.put_object(Bucket=bucket, Key=f"billing/{replaced['key']}", Body=b"%PDF-forged")
    client.delete_object(Bucket=bucket, Key=f"billing/{hidden['key']}")  # a delete marker
    client.put_object(Bucket=bucket, Key="billing/manifests/2026-10.json", Body=b"{}")
    problems = verify_cycle(engine, archive, "2026-11")
    newer = (
        f"invoice {replaced['number']}: {replaced['key']} has a newer version than the archived one"
    )
    assert newer in problems
    assert (
        f"invoice {hidden['number']}: {hidden['key']} is deleted (no current version)" in problems
    )
    assert verify_cycle(engine, archive, "2026-10") == [
        "manifests/2026-10.json: has a newer version than the archived one"
    ]


def test_print_batches_are_kept_as_long_as_the_configured_retention(aws_env, settings_for):
    # A print batch holds copies of invoices: it is locked exactly as long as they are, by the
    # configured INVOICES_ARCHIVE_RETENTION_YEARS (it used to take the default ten years).
    client = boto3.client("s3")
    locked = f"archive-{uuid.uuid4().hex[:8]}"
    client.create_bucket(
        Bucket=locked, CreateBucketConfiguration=REGION, ObjectLockEnabledForBucket=True
    )
    settings = settings_for(archive_url=f"s3://{locked}/billing", archive_retention_years=7)
    report = pipeline.run_cycle(Runtime(settings), "2026-10")
    archive = open_archive(settings.archive_url)
    batch = [key for key in archive.list("print/2026-10/")]
    assert report["paper_queued"] > 0 and len(batch) == 2  # the merged PDF and the mailing CSV
    kept_until = date(2026 + 7, 12, 31)  # cycle 2026-10 is issued in 2026
    for key in [*batch, *list(archive.list("invoices/"))[:5], "manifests/2026-10.json"]:
        assert archive.retention(key) == ("COMPLIANCE", kept_until), key
