"""A name the invoice font cannot draw costs no invoice: it is issued, its PDF prints a visible
replacement, the ledger keeps the name as given, and the run report flags the customer."""

from __future__ import annotations

import csv
import io
import shutil

import pypdf
import sqlalchemy as sa

from billing import pipeline
from billing.runtime import Runtime
from billing.stages.report_text import format_report
from storage.ledger import invoices, open_ledger
from tests.support.paths import SAMPLES

CYCLE = "2026-10"
ROCKET_NAME = "Ion \U0001f680 Popescu"  # DejaVu Sans Condensed has no rocket
SPOOFED_NAME = "Ana \u202eucsepoP\u202c Pop\u200fescu"  # RLO ... PDF, and an RLM


def test_an_emoji_name_is_invoiced_printed_with_a_replacement_and_flagged(
    tmp_path, settings_for, ledger_url
):
    source = tmp_path / "source"
    shutil.copytree(SAMPLES / CYCLE, source / CYCLE)
    customers = source / CYCLE / "customers.csv"
    rows = list(csv.DictReader(customers.open(encoding="utf-8")))
    rows[0]["name"], rows[1]["name"] = ROCKET_NAME, SPOOFED_NAME
    with customers.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    rocket, spoofed = rows[0]["customer_id"], rows[1]["customer_id"]

    settings = settings_for(source_url=source, ledger_url=ledger_url)
    report = pipeline.run_cycle(Runtime(settings), CYCLE, run_id="run-1")

    with open_ledger(settings.ledger_url).connect() as conn:
        issued = {
            row.customer_id: row
            for row in conn.execute(
                sa.select(invoices).where(invoices.c.customer_id.in_([rocket, spoofed]))
            )
        }
    assert set(issued) == {rocket, spoofed}
    assert issued[rocket].customer_name == ROCKET_NAME  # the ledger keeps the emoji
    assert "unprintable_text" in issued[rocket].contact_flags.split(",")
    assert issued[spoofed].customer_name == "Ana ucsepoP Popescu"  # no bidi control kept

    archive = settings.home / "archive" / "invoices"
    pdf = (archive / rocket / f"{issued[rocket].number}.pdf").read_bytes()
    text = " ".join(pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    assert "Ion \ufffd Popescu" in text and "\U0001f680" not in text

    assert report["quarantine"]["flagged"].get("unprintable_text") == 1
    flagged = [e for e in report["quarantine"]["examples"] if e["reason"] == "unprintable_text"]
    assert [(e["customer_id"], e["column"], e["action"]) for e in flagged] == [
        (rocket, "name", "flagged")
    ]
    assert report["flagged_customers"] >= 1
    table = format_report(report)
    assert any(
        line.split()[:3] == ["unprintable_text", "1", "flagged"] for line in table.splitlines()
    ), table
