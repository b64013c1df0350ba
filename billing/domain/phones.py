"""Romanian phone numbers as customers type them, and how they may be shown.

The self-service page and the phone channels accept the national form (`0722 123 456`), the
international one (`+40 722 123 456`, `0040722123456`) and the bare `40722...`; everything else
of the product keeps E.164 (`+40722123456`), as the billing export does (contract 1).
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s().\-/]")
# A Romanian subscriber number: 9 digits after the country code, starting with 2, 3 (fixed) or
# 7 (mobile); only mobile numbers receive SMS.
_NATIONAL = re.compile(r"[237][0-9]{8}")


def normalize_ro_phone(text: str) -> str | None:
    """The E.164 form of a Romanian number written as a customer would, or None."""
    digits = _SEPARATORS.sub("", text.strip())
    if len(digits) > 20:
        return None
    for prefix in ("+40", "0040", "40", "0"):
        if digits.startswith(prefix):
            rest = digits[len(prefix) :]
            if _NATIONAL.fullmatch(rest):
                return f"+40{rest}"
    return None


def is_mobile(e164: str) -> bool:
    """True for a Romanian mobile number (+407...), the only kind an SMS code can reach."""
    return e164.startswith("+407") and len(e164) == 12


def mask_phone(e164: str) -> str:
    """The number as the page may show it and a log may never: only its last three digits,
    e.g. "07•• ••• 456"."""
    tail = e164[-3:] if len(e164) >= 3 else ""
    return f"07•• ••• {tail}"
