"""A customer's last six invoices: derived from the ledger, never a mutable object in the locked
archive. The `invoices view` command and the self-service page both call `last_invoices`."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from storage.archive import Archive
from storage.last_six import VIEW_SIZE, newest_archived_invoices


def last_invoices(
    engine: Engine,
    archive: Archive,
    customer_id: str,
    limit: int = VIEW_SIZE,
    expires_in: int = 900,
    periods: bool = False,
) -> list[dict]:
    """The customer's newest archived invoices by issue date (ties by number), newest first, each
    with a download link for its exact archived version that expires within `expires_in` seconds.

    Ordering by issue date means a backfilled older cycle never pushes newer invoices out.
    With `periods`, each also has the billed period (`period_start`, `period_end`), as the page
    shows it."""
    return [
        {
            "number": r["number"],
            "cycle_id": r["cycle_id"],
            "issue_date": r["issue_date"].isoformat(),
            "due_date": r["due_date"].isoformat(),
            "total": f"{r['total']:.2f}",
            "currency": r["currency"],
            "sha256": r["sha256"],
            "url": archive.link(r["key"], r["version_id"], expires_in=expires_in),
            **(
                {
                    "period_start": r["period_start"].isoformat(),
                    "period_end": r["period_end"].isoformat(),
                }
                if periods
                else {}
            ),
        }
        for r in newest_archived_invoices(engine, customer_id, limit)
    ]
