"""The S3 client policy of every S3 backend (archive and blob store), and their error mapping.

`CLIENT_CONFIG` retries adaptively, so 503 SlowDown and other 5xx answers are retried with
backoff; `new_client()` builds a client with it from boto3's own settings (`AWS_ENDPOINT_URL`,
`AWS_DEFAULT_REGION`, credentials). Inside Airflow, give the AWS connection the same policy
(`S3Hook(..., config=CLIENT_CONFIG)`).

`with map_s3_errors(action, where):` is the one point where botocore's errors enter the
product's tree (billing.domain.errors), once botocore's retries are spent:

    NoSuchKey, NoSuchVersion, 404, NotFound       FileNotFoundError(where)
    PreconditionFailed, ConditionalRequestConflict ArchiveConflictError: a conditional write
                                                   met an existing (or in-flight) object
    any other ClientError, BotoCoreError           ArchiveError (retryable), naming `where` and
    (EndpointConnectionError, timeouts, checksum)  the error code
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from billing.domain.errors import ArchiveConflictError, ArchiveError

CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=32)

MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NotFound"})
CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


def new_client() -> Any:
    """An S3 client from boto3's own settings with `CLIENT_CONFIG`; thread-safe."""
    import boto3

    return boto3.session.Session().client("s3", config=CLIENT_CONFIG)


@contextlib.contextmanager
def map_s3_errors(action: str, where: str) -> Iterator[None]:
    """Raise botocore's errors inside the block as the product's, e.g. `could not read
    s3://bucket/key: NoSuchBucket The specified bucket does not exist`."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in MISSING_CODES:
            raise FileNotFoundError(where) from None
        error = ArchiveConflictError if code in CONFLICT_CODES else ArchiveError
        raise error(f"could not {action} {where}: {_reason(exc)}") from exc
    except BotoCoreError as exc:  # EndpointConnectionError among them
        raise ArchiveError(f"could not {action} {where}: {exc}") from exc


def error_code(exc: ClientError) -> str:
    """S3's error code of `exc` ("NoSuchKey", "PreconditionFailed", a bare "404" for HEAD)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', '?')} {error.get('Message', '')}".strip()
