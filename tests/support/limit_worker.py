"""A separate process that hits rate limits, for the concurrency tests; started once, it serves
one test after another.

python limit_worker.py

It prints "ready" once imported, then answers lines on stdin:
  open STORE_URL                            open the store (a ledger URL or redis://); "ready"
  hit BUCKET HITS LIMIT WINDOW_SECONDS NOW  hit the bucket HITS times; how many were allowed
"""

from __future__ import annotations

import sys
from datetime import datetime

from billing.accounts.limits import LedgerLimiter, Limit, RedisLimiter


def open_limiter(url: str):
    if url.startswith("redis://"):
        import redis

        return RedisLimiter(redis.Redis.from_url(url))
    from storage.ledger import open_ledger

    return LedgerLimiter(open_ledger(url))


def main() -> None:
    limiter = None
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "open":
            limiter = open_limiter(args[0])
            print("ready", flush=True)
        elif command == "hit":
            bucket, hits, allowed, window, now = args
            limit, moment = Limit("test", int(allowed), int(window)), datetime.fromisoformat(now)
            print(sum(limiter.hit(bucket, limit, moment) for _ in range(int(hits))), flush=True)


if __name__ == "__main__":
    main()
