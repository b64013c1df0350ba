"""Preference changes over real cycles (billing.pipeline, no Airflow): a change made on the page
or by phone shapes the next cycle's invoices, notices and print batch although its export still
carries the old value, until an export carries it; from then on the export is taken as it is.

Four customers over four cycles (run once for the module):

    2026-10  the export: A electronic/e-mail, B paper/none to a mailing address, C electronic/SMS,
             D electronic/e-mail. Then A asks on the page for paper to a new address, B by
             phone for electronic with SMS, C for both notices.
    2026-11  the export still has the old values. After the run, D asks for no notices.
    2026-12  the export carries A's and C's changes (A's address as the billing system writes
             it), not B's nor D's.
    2027-01  the billing system itself moves A back to electronic and C back to e-mail.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from billing import pipeline
from billing.accounts.preferences import change_preference
from billing.config import Settings
from billing.runtime import Runtime
from storage.ledger import invoices, notices, open_ledger, preference_changes
from tests.support.cycle_export import customer_row, write_export

CYCLES = ("2026-10", "2026-11", "2026-12", "2027-01")
MAILING = {
    "paper_street": "Str. Ştefan cel Mare nr. 12, ap. 3",
    "paper_city": "Cluj-Napoca",
    "paper_county": "Cluj",
    "paper_postal_code": "400001",
}
OLD_MAILING = {
    "paper_street": "Bd. Unirii nr. 1",
    "paper_city": "București",
    "paper_county": "București",
    "paper_postal_code": "030167",
}


def exports() -> dict[str, list[dict]]:
    old = [
        customer_row("C0000001"),
        customer_row("C0000002", delivery="paper", notify="none", **OLD_MAILING),
        customer_row("C0000003", notify="sms"),
        customer_row("C0000004"),
    ]
    carried = [
        customer_row(
            "C0000001", delivery="paper", paper_street="STR. ȘTEFAN CEL MARE NR. 12,  AP. 3",
            paper_city="Cluj-Napoca", paper_county="CLUJ", paper_postal_code="400001",
        ),
        old[1],
        customer_row("C0000003", notify="both"),
        old[3],
    ]  # fmt: skip
    later = [customer_row("C0000001"), old[1], customer_row("C0000003"), old[3]]
    return {"2026-10": old, "2026-11": old, "2026-12": carried, "2027-01": later}


def observe(engine, cycle_id: str) -> dict:
    """What a cycle left: each customer's invoice snapshot, notice channels and recipients,
    and the state of each customer's newest change."""
    with engine.connect() as conn:
        issued = {
            r.customer_id: r
            for r in conn.execute(sa.select(invoices).where(invoices.c.cycle_id == cycle_id))
        }
        sent = {}
        for r in conn.execute(
            sa.select(invoices.c.customer_id, notices.c.channel, notices.c.recipient)
            .join(notices, notices.c.number == invoices.c.number)
            .where(invoices.c.cycle_id == cycle_id)
        ):
            sent.setdefault(r.customer_id, {})[r.channel] = r.recipient
        changes = {
            r.customer_id: (r.state, r.cycle_id)
            for r in conn.execute(sa.select(preference_changes).order_by(preference_changes.c.id))
        }
    return {"invoices": issued, "notices": sent, "changes": changes}


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference-cycles")
    for cycle_id, customers in exports().items():
        write_export(root / "cycles", cycle_id, customers)
    settings = Settings.from_env(
        {"INVOICES_HOME": str(root / "home"), "INVOICES_SOURCE_URL": str(root / "cycles")}
    )
    runtime = Runtime(settings)
    engine = open_ledger(settings.ledger_url)
    seen = {}
    for cycle_id in CYCLES:
        pipeline.run_cycle(runtime, cycle_id, run_id=f"run-{cycle_id}")
        seen[cycle_id] = observe(engine, cycle_id)
        if cycle_id == "2026-10":
            when = datetime(2026, 10, 20, 9, 0, tzinfo=UTC)
            asked = [
                change_preference(engine, "C0000001", "web", when, delivery="paper", address=MAILING),
                change_preference(engine, "C0000002", "ivr", when, delivery="electronic", notify="sms"),
                change_preference(engine, "C0000003", "web", when, notify="both"),
            ]  # fmt: skip
            assert all(o.ok and o.changed for o in asked), asked
        if cycle_id == "2026-11":
            seen["2026-11 export"] = "".join(pipeline.export_preference_changes(runtime))
            late = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
            assert change_preference(engine, "C0000004", "ussd", late, notify="none").changed
            # running the cycle again changes none of its invoices
            pipeline.run_cycle(runtime, cycle_id, run_id="run-2026-11-again")
            assert observe(engine, cycle_id)["invoices"] == seen[cycle_id]["invoices"]
    return settings, seen


def test_the_next_cycle_honours_a_change_the_export_does_not_carry_yet(story):
    _, seen = story
    issued, sent = seen["2026-11"]["invoices"], seen["2026-11"]["notices"]

    a = issued["C0000001"]
    assert (a.delivery, a.notify) == ("paper", "email")
    assert (a.paper_street, a.paper_city, a.paper_county, a.paper_postal_code) == (
        "Str. Ștefan cel Mare nr. 12, ap. 3", "Cluj-Napoca", "Cluj", "400001",
    )  # fmt: skip
    assert sent["C0000001"].keys() == {"email", "paper"}
    assert "Cluj-Napoca" in sent["C0000001"]["paper"]

    b = issued["C0000002"]
    assert (b.delivery, b.notify) == ("electronic", "sms")
    assert sent["C0000002"] == {"sms": b.phone}  # no paper any more

    assert issued["C0000003"].notify == "both" and sent["C0000003"].keys() == {"email", "sms"}
    assert issued["C0000004"].notify == "email" and sent["C0000004"].keys() == {"email"}

    assert seen["2026-11"]["changes"] == {
        "C0000001": ("applied", "2026-11"),
        "C0000002": ("applied", "2026-11"),
        "C0000003": ("applied", "2026-11"),
    }
    # before 2026-11 the export had those values, and issued them as they were
    october = seen["2026-10"]["invoices"]
    assert [october[c].delivery for c in ("C0000001", "C0000002")] == ["electronic", "paper"]


def test_the_export_of_changes_says_what_cycles_made_of_them(story):
    _, seen = story
    rows = list(csv.DictReader(io.StringIO(seen["2026-11 export"])))

    assert [(r["customer_id"], r["source"], r["state"]) for r in rows] == [
        ("C0000001", "web", "applied"),
        ("C0000002", "ivr", "applied"),
        ("C0000003", "web", "applied"),
    ]
    assert rows[0]["delivery"] == "paper" and rows[0]["paper_postal_code"] == "400001"
    assert rows[0]["changed_at"] == "2026-10-20T09:00:00Z"


def test_the_paper_switch_prints_to_the_new_address_in_that_cycles_batch(story):
    settings, seen = story
    [batch] = (settings.home / "archive" / "print" / "2026-11").glob("*.csv")
    rows = {r["customer_id"]: r for r in csv.DictReader(io.StringIO(batch.read_text("utf-8")))}

    assert rows.keys() == {"C0000001"}  # B went electronic
    printed = rows["C0000001"]
    assert printed["invoice_number"] == seen["2026-11"]["invoices"]["C0000001"].number
    assert (printed["street"], printed["city"], printed["county"], printed["postal_code"]) == (
        "Str. Ștefan cel Mare nr. 12, ap. 3", "Cluj-Napoca", "Cluj", "400001",
    )  # fmt: skip
    october = (settings.home / "archive" / "print" / "2026-10").glob("*.csv")
    assert "Bd. Unirii nr. 1" in next(october).read_text("utf-8")  # B's, before the change


def test_an_export_that_carries_a_change_settles_it(story):
    _, seen = story
    changes = seen["2026-12"]["changes"]

    assert changes["C0000001"] == ("reflected", "2026-12")
    assert changes["C0000003"] == ("reflected", "2026-12")
    assert changes["C0000002"] == ("applied", "2026-11")  # not carried yet: still honoured
    assert changes["C0000004"] == ("applied", "2026-12")  # made after 2026-11 was issued
    issued = seen["2026-12"]["invoices"]
    # the export's own writing of the address (its whitespace folded, as staging does)
    assert issued["C0000001"].paper_street == "STR. ȘTEFAN CEL MARE NR. 12, AP. 3"
    assert issued["C0000002"].delivery == "electronic"
    # D's change came after 2026-11 was issued: that invoice kept e-mail, 2026-12 has none
    assert seen["2026-11"]["invoices"]["C0000004"].notify == "email"
    assert issued["C0000004"].notify == "none" and "C0000004" not in seen["2026-12"]["notices"]


def test_once_settled_the_exports_own_later_value_wins(story):
    _, seen = story
    issued, sent = seen["2027-01"]["invoices"], seen["2027-01"]["notices"]

    assert (issued["C0000001"].delivery, issued["C0000003"].notify) == ("electronic", "email")
    assert sent["C0000001"].keys() == {"email"} and sent["C0000003"].keys() == {"email"}
    assert seen["2027-01"]["changes"]["C0000001"] == ("reflected", "2026-12")
    # the one the exports never carried is honoured still
    assert issued["C0000002"].delivery == "electronic" and sent["C0000002"].keys() == {"sms"}


def test_the_run_reports_count_the_paper_the_changes_made(story):
    settings, _ = story
    reports = {
        c: json.loads(
            next((settings.home / "archive" / "reports" / c).glob("run-*.json")).read_text()
        )
        for c in ("2026-10", "2026-11")
    }
    assert reports["2026-10"]["paper_queued"] == 1  # B
    assert reports["2026-11"]["paper_queued"] == 1  # A
