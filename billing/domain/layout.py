"""Where each document lives in the archive (contracts 4 and 7), and how long it is kept.

    invoices/<customer_id>/<number>.pdf               the invoice, written once
    manifests/<cycle_id>.json                         the cycle manifest (hash-chained)
    print/<cycle_id>/part-<k>-<n>-<digest>.pdf|csv    part k of the print batch (n invoices) and
                                                      its mailing list
    reports/<cycle_id>/<run_id>.json                  a run report (+ .quarantine.csv)

Every key is built here, so a reader (audit, the view, the report) and the writer never disagree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import date

RETENTION_YEARS = 10  # Law 82/1991 art. 25; INVOICES_ARCHIVE_RETENTION_YEARS may say more


def invoice_key(customer_id: str, number: str) -> str:
    return f"invoices/{customer_id}/{number}.pdf"


def efactura_key(customer_id: str, number: str) -> str:
    """The e-Factura XML of an invoice (contract 7)."""
    return f"efactura/{customer_id}/{number}.xml"


def efactura_response_key(customer_id: str, number: str) -> str:
    """ANAF's response to an invoice's upload (the signed invoice or its errors), a ZIP."""
    return f"efactura/{customer_id}/{number}.anaf.zip"


def manifest_key(cycle_id: str) -> str:
    return f"manifests/{cycle_id}.json"


def print_part_key(cycle_id: str, part: int, numbers: Sequence[str]) -> str:
    """The key (without .pdf/.csv) of part `part` (1, 2, ... in postal-code order) of the
    cycle's print batch, holding `numbers`: it depends only on its place and on which invoices
    it holds, so writing the same part again finds it. The names sort in print order."""
    digest = hashlib.sha256("\n".join(sorted(numbers)).encode()).hexdigest()[:12]
    return f"print/{cycle_id}/part-{part:04d}-{len(numbers):05d}-{digest}"


def reports_prefix(cycle_id: str) -> str:
    return f"reports/{cycle_id}/"


def report_key(cycle_id: str, run_id: str, suffix: str = ".json") -> str:
    """The run report of `run_id` (Airflow run ids hold characters keys should not)."""
    safe = re.sub(r"[^A-Za-z0-9._:+-]", "_", run_id)
    return f"{reports_prefix(cycle_id)}{safe}{suffix}"


def retention_end(issue_date: date, years: int) -> date:
    """Last day a document issued on `issue_date` must be kept: the end of its financial year
    plus `years` (Law 82/1991 art. 25: ten years from the end of the year it was drawn up).
    No default: every caller passes the configured years."""
    return date(issue_date.year + years, 12, 31)
