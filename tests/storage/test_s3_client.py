"""Both S3 backends share one client policy, and no botocore error gets past storage/."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from billing.domain.errors import ArchiveConflictError, ArchiveError
from billing.runtime import Runtime
from storage.archive import open_archive
from storage.archive.s3 import S3Archive
from storage.blobs import open_store
from storage.blobs.s3 import S3Store
from storage.s3_client import map_s3_errors

# One attempt, short timeouts: a closed port fails at once instead of after ten retries.
IMPATIENT = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1)


def test_every_s3_client_storage_builds_has_the_one_retry_policy(aws_env, settings_for):
    clients = {
        "store": open_store("s3://some-bucket/exports").client,
        "archive": open_archive("s3://some-bucket/archive").client,
        "runtime": Runtime(settings_for()).s3_client,
    }
    # botocore rewrites max_attempts 10 as total_max_attempts 11 (retries + the first attempt).
    for name, client in clients.items():
        config = client.meta.config
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 11}, name
        assert config.max_pool_connections == 32, name


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda store: store.read_bytes("2026-11/customers.csv"), id="read_bytes"),
        pytest.param(lambda store: store.open_read("2026-11/customers.csv"), id="open_read"),
        pytest.param(lambda store: store.write_bytes("2026-11/x.csv", b"x"), id="write_bytes"),
        pytest.param(lambda store: list(store.list("2026-11/")), id="list"),
        pytest.param(lambda store: store.delete_prefix("2026-11"), id="delete_prefix"),
    ],
)
def test_a_bucket_that_does_not_exist_is_an_archive_error_not_a_client_error(aws_env, operation):
    store = open_store("s3://no-such-bucket-here/exports")

    with pytest.raises(ArchiveError) as failed:
        operation(store)

    assert not isinstance(failed.value, ClientError)
    assert failed.value.retryable
    assert "s3://no-such-bucket-here/exports" in str(failed.value)
    assert "NoSuchBucket" in str(failed.value)


def test_a_missing_object_in_the_store_is_file_not_found_naming_its_url(s3_bucket):
    _, bucket = s3_bucket
    store = open_store(f"s3://{bucket}/exports")

    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/exports/2026-11/customers.csv"):
        store.read_bytes("2026-11/customers.csv")
    assert not store.exists("2026-11/customers.csv")


def test_an_unreachable_endpoint_is_a_retryable_archive_error_for_both_backends(aws_env):
    import boto3

    client = boto3.client("s3", endpoint_url="http://127.0.0.1:1", config=IMPATIENT)
    store, archive = S3Store("invoices", "exports", client), S3Archive(client, "invoices", "arch")

    with pytest.raises(ArchiveError, match="s3://invoices/exports/a.csv") as from_store:
        store.read_bytes("a.csv")
    with pytest.raises(
        ArchiveError, match="s3://invoices/arch/invoices/C1/OR1.pdf"
    ) as from_archive:
        archive.get("invoices/C1/OR1.pdf")
    for failed in (from_store, from_archive):
        assert failed.value.retryable
        assert isinstance(failed.value.__cause__, EndpointConnectionError)


def client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "PutObject")


@pytest.mark.parametrize(
    ("raised", "expected", "retryable"),
    [
        pytest.param(client_error("NoSuchKey"), FileNotFoundError, None, id="NoSuchKey"),
        pytest.param(client_error("404"), FileNotFoundError, None, id="bare-404-of-HEAD"),
        pytest.param(client_error("PreconditionFailed"), ArchiveConflictError, False, id="412"),
        pytest.param(client_error("SlowDown", "Reduce your rate"), ArchiveError, True, id="503"),
        pytest.param(client_error("AccessDenied"), ArchiveError, True, id="403"),
        pytest.param(
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ArchiveError, True,
            id="no-connection",
        ),
    ],
)  # fmt: skip
def test_botocore_errors_become_the_products_naming_the_object(raised, expected, retryable):
    with pytest.raises(expected) as mapped:
        with map_s3_errors("store", "s3://invoices/arch/a.pdf"):
            raise raised

    assert "s3://invoices/arch/a.pdf" in str(mapped.value)
    if retryable is not None:
        assert mapped.value.retryable is retryable
        assert str(mapped.value).startswith("could not store s3://invoices/arch/a.pdf: ")
    if isinstance(raised, ClientError) and expected is not FileNotFoundError:
        assert raised.response["Error"]["Code"] in str(mapped.value)
