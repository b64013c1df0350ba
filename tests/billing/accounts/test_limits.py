"""Rate limits shared by every page worker: a fixed window allows exactly `hits` per bucket,
however many threads and processes count at once, in the ledger (SQLite, PostgreSQL) or Redis."""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa

from billing.accounts.limits import LedgerLimiter, Limit, RedisLimiter
from storage.ledger import open_ledger, rate_limits

REDIS_URL = os.environ.get("INVOICES_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# the start of an hour, so windows of a minute and of an hour begin together
T0 = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
PER_MINUTE = Limit("code-phone", hits=3, window_seconds=60)


@pytest.fixture(scope="module")
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is required at {REDIS_URL}: {exc}", pytrace=False)
    yield client
    client.close()


@pytest.fixture
def bucket(request) -> str:
    """A bucket no other test (or earlier run) counts in."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "redis"])
def limiter(request, bucket):
    """Each limiter over its real store (the session's shared ledgers, the machine's Redis);
    Redis keys of the test are removed after it."""
    if request.param != "redis":
        url = {"sqlite": "sqlite_session_url", "postgresql": "pg_session_url"}[request.param]
        yield LedgerLimiter(open_ledger(request.getfixturevalue(url)))
        return
    client = request.getfixturevalue("redis_client")
    yield RedisLimiter(client)
    for key in client.scan_iter(match=f"invoices:rate:{bucket}*"):
        client.delete(key)


def test_a_window_allows_exactly_its_hits(limiter, bucket):
    inside = [T0 + timedelta(seconds=s) for s in (0, 10, 59, 59)]

    assert [limiter.hit(bucket, PER_MINUTE, t) for t in inside] == [True, True, True, False]
    # the next window starts afresh
    assert limiter.hit(bucket, PER_MINUTE, T0 + timedelta(seconds=60)) is True


def test_buckets_and_windows_count_apart(limiter, bucket):
    for _ in range(3):
        limiter.hit(bucket, PER_MINUTE, T0)

    assert limiter.hit(bucket + "-other", PER_MINUTE, T0) is True
    assert limiter.hit(bucket, PER_MINUTE, T0 + timedelta(minutes=5)) is True
    assert limiter.hit(bucket, PER_MINUTE, T0) is False


def test_threads_at_once_never_pass_the_limit(limiter, bucket):
    limit = Limit("code-client", hits=25, window_seconds=3600)
    barrier = threading.Barrier(8)
    allowed = []

    def hit_ten_times():
        barrier.wait()
        allowed.append(sum(limiter.hit(bucket, limit, T0) for _ in range(10)))

    threads = [threading.Thread(target=hit_ten_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(allowed) == 8 and sum(allowed) == 25


def _hit_in_a_process(url, bucket, barrier, results) -> None:
    """A forked process's own store and limiter, hitting the bucket once all are ready."""
    from storage import ledger

    ledger._engines.clear()  # the parent's engines stay the parent's
    if url.startswith("redis://"):
        store = redis.Redis.from_url(url)
        limiter = RedisLimiter(store)
    else:
        store = ledger.open_ledger(url)
        limiter = LedgerLimiter(store)
    limit = Limit("code-client", hits=25, window_seconds=3600)
    barrier.wait(timeout=30)
    results.put(sum(limiter.hit(bucket, limit, T0) for _ in range(15)))
    store.close() if url.startswith("redis://") else store.dispose()


def test_processes_at_once_never_pass_the_limit(limiter, bucket):
    # forked: a process that starts Python and imports the project anew takes seconds
    context = multiprocessing.get_context("fork")
    if isinstance(limiter, RedisLimiter):
        url = REDIS_URL
    else:
        url = limiter.engine.url.render_as_string(hide_password=False)
    barrier, results = context.Barrier(3), context.Queue()
    processes = [
        context.Process(target=_hit_in_a_process, args=(url, bucket, barrier, results))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    allowed = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert sum(allowed) == 25  # of 45 hits


def test_redis_forgets_a_window_after_two_of_its_length(redis_client, bucket):
    limiter = RedisLimiter(redis_client)
    try:
        limiter.hit(bucket, PER_MINUTE, T0)
        [key] = list(redis_client.scan_iter(match=f"invoices:rate:{bucket}*"))
        assert 0 < redis_client.ttl(key) <= 120
        assert bucket in key.decode()
    finally:
        for key in redis_client.scan_iter(match=f"invoices:rate:{bucket}*"):
            redis_client.delete(key)


def test_the_ledger_forgets_windows_long_gone(shared_ledger, bucket):
    limiter = LedgerLimiter(shared_ledger)
    # a window whose number is a multiple of 64 cleans up, on its first hit
    cleaning = datetime.fromtimestamp((int(T0.timestamp()) // 60 // 64 + 1) * 64 * 60, UTC)
    limiter.hit(bucket, PER_MINUTE, cleaning - timedelta(days=2))
    limiter.hit(bucket, PER_MINUTE, cleaning - timedelta(hours=1))

    limiter.hit(bucket + "-cleaner", PER_MINUTE, cleaning)

    with shared_ledger.connect() as conn:
        left = conn.execute(
            sa.select(rate_limits.c.window_end).where(rate_limits.c.bucket.like(f"{bucket}:%"))
        ).scalars()
        ends = sorted(e.replace(tzinfo=e.tzinfo or UTC) for e in left)
    assert ends == [cleaning - timedelta(hours=1) + timedelta(minutes=1)]
