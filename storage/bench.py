"""Archive write throughput: objects per second to a local S3 server (moto, real HTTP on
127.0.0.1) and to the local folder, one at a time against a bounded pool of writers.

    python -m storage.bench [--objects N] [--workers W]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from storage.archive import Archive
from storage.archive.local import LocalArchive

PDF_SIZE = 16_700  # the reference invoice's size
RETAIN = date(2036, 12, 31)


def write_rate(archive: Archive, objects: int, workers: int) -> float:
    """Objects per second for `objects` distinct write-once puts with `workers` writers."""
    run = uuid.uuid4().hex[:8]
    payloads = [
        (f"invoices/C{i:07d}/{run}{i:08d}.pdf", os.urandom(PDF_SIZE)) for i in range(objects)
    ]
    started = time.perf_counter()
    if workers == 1:
        for key, data in payloads:
            archive.put_once(key, data, RETAIN)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda item: archive.put_once(item[0], item[1], RETAIN), payloads))
    return objects / (time.perf_counter() - started)


def moto_archive(locked: bool) -> tuple[Archive, Callable[[], None]]:
    """An S3Archive on a fresh bucket of a moto server started here; and how to stop it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from storage.archive.s3 import S3Archive
    from storage.s3_client import CLIENT_CONFIG

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="eu-central-1",
        aws_access_key_id="bench", aws_secret_access_key="bench", config=CLIENT_CONFIG,
    )  # fmt: skip
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
        ObjectLockEnabledForBucket=locked,
    )  # fmt: skip
    return S3Archive(client, bucket, "bench"), server.stop


def bench(objects: int, workers: int) -> Table:
    table = Table(title=f"Archive writes, {objects} objects of {PDF_SIZE // 1000} KB")
    for column in ("archive", "writers", "objects/s", "vs one writer"):
        table.add_column(column, justify="right" if column != "archive" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("local folder", lambda: (LocalArchive(Path(tmp)), lambda: None))]
        targets += [
            ("S3 (moto, 127.0.0.1)", lambda: moto_archive(False)),
            ("S3 + Object Lock (moto)", lambda: moto_archive(True)),
        ]
        for name, make in targets:
            archive, stop = make()
            try:
                single = write_rate(archive, objects, 1)
                pooled = write_rate(archive, objects, workers)
            finally:
                stop()
            table.add_row(name, "1", f"{single:,.0f}", "(baseline)")
            table.add_row(name, str(workers), f"{pooled:,.0f}", f"{pooled / single:.2f}x")
    table.caption = f"os.cpu_count() = {os.cpu_count()}; moto is itself Python on the same 2 cores"
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m storage.bench", description=__doc__)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    Console(width=None if sys.stdout.isatty() else 120).print(bench(args.objects, args.workers))


if __name__ == "__main__":
    main()
