"""The rate limits the page and the phone channels share: a number asks for codes on one budget
(INVOICES_CODES_PER_PHONE an hour), whether the customer types it on the page or texts COD."""

from __future__ import annotations

from datetime import datetime

from billing.accounts.limits import Limit
from billing.runtime import Runtime

HOUR = 3600


def code_requests_per_phone(runtime: Runtime) -> Limit:
    return Limit("code-phone", runtime.settings.codes_per_phone, HOUR)


def allow_code_request(runtime: Runtime, phone: str, now: datetime) -> bool:
    """Count one code request for `phone` (E.164); False when its hour is used up. The bucket
    is a keyed hash of the number: the counters never hold it."""
    limit = code_requests_per_phone(runtime)
    bucket = runtime.portal_keys.digest("rate-limit", limit.name, phone)
    return runtime.limiter.hit(bucket, limit, now)


def seconds_left(limit: Limit, now: datetime) -> int:
    """Seconds until `limit`'s current window ends (for a Retry-After header)."""
    return limit.window_seconds - int(now.timestamp()) % limit.window_seconds
