"""What a customer does on the page, in a real browser on a phone-sized screen.

Debian's Chromium driven by Playwright (tests/support/browser.py), 390 x 844, against the real
server (`make portal`: uvicorn, two workers) over a copy of seven issued cycles. axe-core checks
every page the walk passes; no serious or critical violation is allowed.

With PORTAL_SCREENSHOTS=<folder> (`make screenshots`), the walk also saves a picture of each
page, as docs/portal.md shows them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.browser import axe_violations, format_violations

pytestmark = pytest.mark.slow

SHOTS = os.environ.get("PORTAL_SCREENSHOTS", "")
NEW_ADDRESS = {
    "paper_street": "Str. Ștefan cel Mare nr. 12, bl. A2, ap. 7",
    "paper_city": "Iași",
    "paper_county": "Iași",
    "paper_postal_code": "700064",
}
NEXT_CYCLE = "2026-12"
SAMPLE_CUSTOMERS, SAMPLE_SEED = 6, 7  # as the `portal_sample` fixture makes its cycles


class Walk:
    """The page in the phone's browser, checked by axe at every step."""

    def __init__(self, page, url: str) -> None:
        self.page, self.url = page, url
        self.checked: dict[str, int] = {}

    def check(self, name: str) -> None:
        """axe on the page as it is now; a picture of it when asked for."""
        violations = axe_violations(self.page)
        assert not violations, f"{name}: {format_violations(violations)}"
        self.checked[name] = len(violations)
        assert self.page.evaluate("window.innerWidth") == 390
        # nothing wider than the phone's screen: no sideways scrolling
        assert self.page.evaluate("document.documentElement.scrollWidth") <= 390, name
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True, scale="css")


def _ledger_sha256(runtime, number: str) -> str:
    from storage.ledger import invoice_documents

    with runtime.ledger.connect() as conn:
        return conn.execute(
            sa.select(invoice_documents.c.sha256).where(invoice_documents.c.number == number)
        ).scalar_one()


def _newest_numbers(runtime, customer_id: str) -> list[str]:
    from storage.last_six import newest_archived_invoices

    return [r["number"] for r in newest_archived_invoices(runtime.ledger, customer_id, 10)]


def test_a_customer_on_a_phone(
    portal_sample, portal_home, make_runtime, serve_portal, phone_page, outbox, tmp_path
):
    from billing import pipeline
    from sample_data.generator import write_cycle

    server = serve_portal(portal_sample.env(portal_home))
    runtime = make_runtime()
    walk = Walk(phone_page, server.url)
    page = phone_page
    known = _newest_numbers(runtime, portal_sample.customer_id)
    assert len(known) == 7, "seven cycles issued: one more than the page shows"

    # 1. the phone number, in its national form
    page.goto(server.url + "/")
    walk.check("01-home")
    seen = len(outbox.code_messages(portal_sample.phone))
    page.get_by_label("Număr de telefon").fill(
        "0" + portal_sample.phone[3:6] + " " + portal_sample.phone[6:]
    )
    page.get_by_role("button", name="Trimite codul").click()
    page.get_by_label("Codul de 6 cifre").wait_for()
    walk.check("02-code")
    code = outbox.wait_for_code(portal_sample.phone, seen)

    # 2. a wrong code first, then the right one
    wrong = "000000" if code != "000000" else "111111"
    page.get_by_label("Codul de 6 cifre").fill(wrong)
    page.get_by_role("button", name="Intră în cont").click()
    assert "Mai ai 4 încercări" in page.get_by_role("alert").inner_text()
    walk.check("03-wrong-code")
    page.get_by_label("Codul de 6 cifre").fill(code)
    page.get_by_role("button", name="Intră în cont").click()
    page.get_by_role("heading", name="Contul tău").wait_for()
    assert page.url == server.url + "/account"

    # 3. the latest invoice, and the last six of seven, newest first
    latest = page.locator("dl.invoice")
    assert latest.get_attribute("data-number") == known[0]
    for label in ("Număr", "Perioada", "Total de plată", "Scadență"):
        assert label in latest.inner_text()
    listed = page.locator("ol.invoices li").evaluate_all(
        "items => items.map(i => i.dataset.number)"
    )
    assert listed == known[:6]
    walk.check("04-account")

    # 4. the PDF downloaded is the one the ledger records
    with page.expect_download() as download:
        page.get_by_role("link", name=f"Descarcă factura {known[0]} (PDF)").first.click()
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF")
    assert hashlib.sha256(pdf).hexdigest() == _ledger_sha256(runtime, known[0])
    assert download.value.suggested_filename == f"{known[0]}.pdf"

    # 5. paper, to a new address
    form = page.locator("form[action='/account/preferences']")
    form.get_by_label("Pe hârtie, prin poștă").check()
    labels = {
        "paper_street": "Strada, numărul, blocul, apartamentul",
        "paper_city": "Localitatea",
        "paper_county": "Județul (sau sectorul, în București)",
        "paper_postal_code": "Codul poștal (6 cifre)",
    }
    form.get_by_label(labels["paper_postal_code"]).fill("7000")  # one digit short, at first
    for field in ("paper_street", "paper_city", "paper_county"):
        form.get_by_label(labels[field]).fill(NEW_ADDRESS[field])
    if SHOTS:
        form.scroll_into_view_if_needed()
    walk.check("05-preferences")
    form.get_by_role("button", name="Salvează").click()
    assert "codul poștal are 6 cifre" in page.get_by_role("alert").inner_text()
    walk.check("05b-preferences-error")
    form = page.locator("form[action='/account/preferences']")
    form.get_by_label(labels["paper_postal_code"]).fill(NEW_ADDRESS["paper_postal_code"])
    form.get_by_role("button", name="Salvează").click()
    page.get_by_role("status").filter(has_text="Am salvat alegerea ta.").wait_for()
    walk.check("06-saved")

    # 6. the same account in English, then signing out
    page.get_by_role("button", name="Switch to English").click()
    page.get_by_role("heading", name="Your account").wait_for()
    walk.check("07-english")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("status").filter(has_text="You are signed out.").wait_for()
    walk.check("08-signed-out")
    page.goto(server.url + "/sms-code")
    walk.check("09-sms-code")
    page.goto(server.url + "/account")
    assert page.url == server.url + "/", "signed out: the account is no longer shown"

    # 7. the next cycle's export still says electronic; the print batch has the new address
    source = tmp_path / "next-cycles"
    write_cycle(source, NEXT_CYCLE, SAMPLE_CUSTOMERS, seed=SAMPLE_SEED)
    exported = next(
        row
        for row in csv.DictReader(
            io.StringIO((source / NEXT_CYCLE / "customers.csv").read_text("utf-8-sig"))
        )
        if row["customer_id"] == portal_sample.customer_id
    )
    assert exported["delivery"] == "electronic"
    next_runtime = make_runtime(source_url=str(source))
    pipeline.run_cycle(next_runtime, NEXT_CYCLE)
    batch = [k for k in next_runtime.archive.list(f"print/{NEXT_CYCLE}/") if k.endswith(".csv")]
    assert len(batch) == 1, batch
    mailing = next_runtime.archive.get(batch[0]).decode("utf-8-sig")
    rows = [
        r
        for r in csv.DictReader(io.StringIO(mailing))
        if r.get("customer_id") == portal_sample.customer_id
    ]
    assert len(rows) == 1, mailing[:500]
    text = " ".join(rows[0].values())
    for part in NEW_ADDRESS.values():
        assert part in text, (part, rows[0])
    assert re.search(r"Ștefan cel Mare nr\. 12", text)
    assert len(walk.checked) == 10  # every page of the walk passed axe
