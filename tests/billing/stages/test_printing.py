"""The print batch: paper invoices merged in postal-code order with a matching mailing CSV,
written once; a re-run or a crash before the notices were marked prints nothing twice."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa
from pypdf import PdfReader

from billing import pipeline
from billing.runtime import Runtime
from storage.ledger import invoices, notices, open_ledger


def batch_files(settings):
    return sorted((settings.home / "archive" / "print" / "2026-11").iterdir())


def test_paper_invoices_are_batched_by_postal_code_once(settings_for):
    settings = settings_for()
    report = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1")
    mailing_csv, merged_pdf = batch_files(settings)
    rows = list(csv.DictReader(io.StringIO(mailing_csv.read_text(encoding="utf-8"))))
    assert len(rows) == report["paper_queued"] > 0
    assert [r["postal_code"] for r in rows] == sorted(r["postal_code"] for r in rows)
    pages = PdfReader(merged_pdf).pages
    assert len(pages) == sum(int(r["pages"]) for r in rows)
    for row in rows[:5]:  # each invoice starts on the page the CSV says
        assert row["invoice_number"] in pages[int(row["first_page"]) - 1].extract_text()

    engine = open_ledger(settings.ledger_url)
    with engine.connect() as conn:
        paper = conn.execute(
            sa.select(invoices.c.number, invoices.c.paper_postal_code, invoices.c.postal_code)
            .join(notices, notices.c.number == invoices.c.number)
            .where(notices.c.channel == "paper")
        ).all()
        statuses = set(
            conn.execute(sa.select(notices.c.status).where(notices.c.channel == "paper")).scalars()
        )
    by_number = {r["invoice_number"]: r for r in rows}
    assert by_number.keys() == {p.number for p in paper} and statuses == {"sent"}
    with_paper_address = [p for p in paper if p.paper_postal_code]
    assert with_paper_address  # the sample has separate mailing addresses
    for p in with_paper_address:
        assert by_number[p.number]["postal_code"] == p.paper_postal_code

    # a crash after the batch was archived but before its notices were marked
    with engine.begin() as conn:
        conn.execute(notices.update().where(notices.c.channel == "paper").values(status="pending"))
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-2")
    assert batch_files(settings) == [mailing_csv, merged_pdf]  # the same batch, not a second one
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-3")
    assert batch_files(settings) == [mailing_csv, merged_pdf]
