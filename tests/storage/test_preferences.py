"""Preference changes in the ledger: the newest open change of a customer overrides the export
at issuing, first marked with the cycle that applied it, until an export carries it; then it is
settled and the export is taken as it is, whatever the export says later."""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from billing.domain.model import Address
from billing.domain.preferences import Preference
from storage.ledger import preference_changes
from storage.preferences import changes_since, open_overrides, record_change, settle_overrides
from tests.support.factory import CUSTOMER

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
MAILING = Address("Str. Ștefan cel Mare nr. 12", "Cluj-Napoca", "Cluj", "400001")
_ids = itertools.count(1)


def exported(**changes):
    """A customer as a billing export has them (electronic, e-mail), with an id of its own."""
    return replace(CUSTOMER, customer_id=f"S{next(_ids):07d}", **changes)


def state_of(engine, change_id: int):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(preference_changes).where(preference_changes.c.id == change_id)
        ).one()


def record(engine, customer, preference, when=T0, source="web"):
    with engine.begin() as conn:
        return record_change(conn, customer.customer_id, preference, source, when)


def settle(engine, customers, cycle_id):
    with engine.begin() as conn:
        return settle_overrides(conn, customers, cycle_id, T0 + timedelta(days=30))


def test_an_open_change_is_applied_until_an_export_carries_it(shared_ledger):
    customer, other = exported(), exported()
    change = record(shared_ledger, customer, Preference("paper", "sms", MAILING))

    [november, untouched] = settle(shared_ledger, [customer, other], "2026-12")
    assert (november.delivery, november.notify, november.paper_address) == ("paper", "sms", MAILING)
    assert untouched == other
    assert (state_of(shared_ledger, change).state, state_of(shared_ledger, change).cycle_id) == (
        "applied", "2026-12",
    )  # fmt: skip

    # the next export still has the old value: applied again, the first cycle kept
    [december] = settle(shared_ledger, [customer], "2027-01")
    assert december == november
    assert state_of(shared_ledger, change).cycle_id == "2026-12"

    # an export that carries it (the address as the billing system writes it) settles it
    carried = replace(
        customer,
        delivery="paper",
        notify="sms",
        paper_address=Address("STR. ȘTEFAN CEL MARE  NR. 12", "Cluj-Napoca", "CLUJ", "400001"),
    )
    [january] = settle(shared_ledger, [carried], "2027-02")
    assert january == carried  # the export as it is
    row = state_of(shared_ledger, change)
    assert (row.state, row.cycle_id) == ("reflected", "2027-02") and row.settled_at is not None

    # later, the billing system's own change wins: nothing overrides it any more
    later = replace(carried, delivery="electronic", notify="email")
    assert settle(shared_ledger, [later], "2027-03") == [later]
    with shared_ledger.connect() as conn:
        assert open_overrides(conn, [customer.customer_id]) == {}


def test_an_electronic_choice_is_carried_whatever_paper_address_the_export_keeps(shared_ledger):
    customer = exported(delivery="paper", notify="none", paper_address=MAILING)
    change = record(shared_ledger, customer, Preference("electronic", "email", MAILING))

    moved = replace(customer, delivery="electronic", notify="email", paper_address=None)
    assert settle(shared_ledger, [moved], "2026-12") == [moved]
    assert state_of(shared_ledger, change).state == "reflected"


def test_a_paper_change_to_another_address_is_not_carried_by_the_old_one(shared_ledger):
    customer = exported(delivery="paper", notify="none", paper_address=MAILING)
    elsewhere = Address("Bd. Unirii 1", "București", "București", "030167")
    change = record(shared_ledger, customer, Preference("paper", "none", elsewhere))

    [issued] = settle(shared_ledger, [customer], "2026-12")

    assert issued.mailing_address == elsewhere
    assert state_of(shared_ledger, change).state == "applied"


def test_a_new_change_supersedes_the_open_one_and_only_it_applies(shared_ledger):
    customer = exported()
    first = record(shared_ledger, customer, Preference("paper", "sms", MAILING))
    settle(shared_ledger, [customer], "2026-12")  # first is applied
    second = record(shared_ledger, customer, Preference("electronic", "both"), T0 + timedelta(1))

    assert state_of(shared_ledger, first).state == "superseded"
    with shared_ledger.connect() as conn:
        [(change_id, preference)] = open_overrides(conn, [customer.customer_id]).values()
    assert (change_id, preference) == (second, Preference("electronic", "both"))
    [issued] = settle(shared_ledger, [customer], "2027-01")
    assert (issued.delivery, issued.notify) == ("electronic", "both")
    assert state_of(shared_ledger, second).cycle_id == "2027-01"


def test_changes_made_at_once_leave_one_open_change(shared_ledger):
    """A form sent twice, or the page and an SMS at the same moment: one change stays open,
    the others superseded, so no forgotten one can override a later export."""
    customer = exported()
    choices = ["sms", "both", "none", "email"] * 2
    barrier = threading.Barrier(len(choices))

    def change(notify):
        barrier.wait()
        record(shared_ledger, customer, Preference("electronic", notify), datetime.now(UTC))

    threads = [threading.Thread(target=change, args=(n,)) for n in choices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    with shared_ledger.connect() as conn:
        states = (
            conn.execute(
                sa.select(preference_changes.c.state)
                .where(preference_changes.c.customer_id == customer.customer_id)
                .order_by(preference_changes.c.id)
            )
            .scalars()
            .all()
        )
    assert sorted(states) == ["open"] + ["superseded"] * (len(choices) - 1)


def test_changes_read_page_by_page_are_all_there_in_order(shared_ledger):
    same_time = T0 + timedelta(days=3)
    ids = [
        record(shared_ledger, exported(), Preference("electronic", "none"), same_time)
        for _ in range(5)
    ]

    whole = list(changes_since(shared_ledger, same_time))
    paged = list(changes_since(shared_ledger, same_time, page=2))

    assert paged == whole
    assert [c["id"] for c in whole if c["id"] in ids] == ids  # ties in the order recorded
