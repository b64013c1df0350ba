"""A customer's change of delivery and notices, as the page and the phone channels make it:
checked against what the ledger knows of the customer, refused with the field and the reason,
recorded once, the newest change in force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from billing.accounts.preferences import Refusal, change_preference
from billing.domain.model import Address
from billing.domain.preferences import Preference
from storage.customers import standing
from storage.ledger import preference_changes
from tests.support.enrolled import enrol

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
ABROAD = Address("Hauptstraße 5", "Berlin", "", "10115", "DE")
MAILING = {
    "paper_street": "Str. Ştefan cel Mare nr. 12",  # cedilla, as old keyboards type it
    "paper_city": "Cluj-Napoca",
    "paper_county": "Cluj",
    "paper_postal_code": "400001",
}


def changes_of(engine, customer_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(preference_changes)
            .where(preference_changes.c.customer_id == customer_id)
            .order_by(preference_changes.c.id)
        ).all()


def typed(**fields) -> dict[str, str]:
    return {**MAILING, **fields}


@pytest.mark.parametrize(
    ("customer", "request_", "refusal"),
    [
        pytest.param(
            {"address": ABROAD}, {"source": "ivr", "delivery": "paper"},
            ("delivery", "no_mailing_address"), id="phone-paper-only-a-foreign-address",
        ),
        pytest.param(
            {}, {"source": "web", "delivery": "paper", "address": typed(paper_postal_code="4000")},
            ("paper_postal_code", "invalid_postal_code"), id="web-paper-bad-postal-code",
        ),
        pytest.param(
            {}, {"source": "web", "delivery": "paper", "address": typed(paper_county="Bavaria")},
            ("paper_county", "invalid_county"), id="web-paper-bad-county",
        ),
        pytest.param(
            {}, {"source": "web", "delivery": "paper", "address": typed(paper_street=" ")},
            ("paper_street", "missing"), id="web-paper-no-street",
        ),
        pytest.param(
            {}, {"source": "web", "delivery": "paper", "address": dict.fromkeys(MAILING, "")},
            ("paper_street", "no_mailing_address"), id="web-paper-blank-form",
        ),
        pytest.param(
            {"email": "", "notify": "sms"}, {"source": "ussd", "notify": "email"},
            ("notify", "no_email"), id="email-without-an-address",
        ),
        pytest.param(
            {"contact_flags": ("invalid_email",), "notify": "sms"},
            {"source": "web", "notify": "both"},
            ("notify", "no_email"), id="both-with-an-unusable-address",
        ),
        pytest.param(
            {"phone": ""}, {"source": "web", "notify": "sms"},
            ("notify", "no_sms"), id="sms-without-a-phone",
        ),
        pytest.param(
            {}, {"source": "sms", "delivery": "fax"},
            ("delivery", "invalid_choice"), id="no-such-delivery",
        ),
        pytest.param(
            {}, {"source": "sms", "notify": "pigeon"},
            ("notify", "invalid_choice"), id="no-such-notice",
        ),
    ],
)  # fmt: skip
def test_a_change_that_cannot_be_honoured_is_refused(shared_ledger, customer, request_, refusal):
    cid = enrol(shared_ledger, **customer).customer_id
    with shared_ledger.connect() as conn:
        before = standing(conn, cid)

    outcome = change_preference(shared_ledger, cid, now=T0, **request_)

    assert not outcome.ok and not outcome.changed
    assert [(r.field, r.reason) for r in outcome.refusals] == [refusal]
    assert changes_of(shared_ledger, cid) == []
    with shared_ledger.connect() as conn:
        assert standing(conn, cid) == before


def test_an_unknown_customer_is_refused(shared_ledger):
    outcome = change_preference(shared_ledger, "NOBODY", "web", T0, notify="none")
    assert outcome.refusals == (Refusal("customer", "no_customer"),)


def test_an_unknown_source_is_a_programming_error(shared_ledger):
    cid = enrol(shared_ledger).customer_id
    with pytest.raises(ValueError, match="source"):
        change_preference(shared_ledger, cid, "fax", T0, notify="none")


def test_paper_from_the_page_takes_the_typed_address_checked(shared_ledger):
    cid = enrol(shared_ledger).customer_id

    outcome = change_preference(shared_ledger, cid, "web", T0, delivery="PAPER", address=MAILING)

    paper = Address("Str. Ștefan cel Mare nr. 12", "Cluj-Napoca", "Cluj", "400001")
    assert outcome.ok and outcome.changed
    assert outcome.preference == Preference("paper", "email", paper)
    [row] = changes_of(shared_ledger, cid)
    assert (row.source, row.state, row.delivery, row.notify) == ("web", "open", "paper", "email")
    assert (row.paper_street, row.paper_postal_code) == (paper.street, "400001")


@pytest.mark.parametrize(
    ("customer", "mailing"),
    [
        pytest.param(
            {}, Address("Str. Mihail Kogălniceanu nr. 3, ap. 4", "Iași", "Iași", "700259"),
            id="the-romanian-billing-address",
        ),
        pytest.param(
            {"address": ABROAD, "paper_address": Address("Bd. Unirii 1", "București", "București", "030167")},
            Address("Bd. Unirii 1", "București", "București", "030167"),
            id="the-mailing-address-on-file",
        ),
    ],
)  # fmt: skip
def test_paper_by_phone_uses_the_address_on_file(shared_ledger, customer, mailing):
    cid = enrol(shared_ledger, **customer).customer_id

    outcome = change_preference(shared_ledger, cid, "ivr", T0, delivery="paper")

    assert outcome.ok and outcome.preference == Preference("paper", "email", mailing)
    with shared_ledger.connect() as conn:
        now = standing(conn, cid)
    assert now.pending_change and now.customer.mailing_address == mailing


def test_a_change_to_what_is_in_force_records_nothing(shared_ledger):
    cid = enrol(shared_ledger, delivery="electronic", notify="email").customer_id

    same = change_preference(shared_ledger, cid, "web", T0, delivery="electronic", notify="email")

    assert same.ok and not same.changed and same.preference == Preference("electronic", "email")
    assert changes_of(shared_ledger, cid) == []

    change_preference(shared_ledger, cid, "web", T0, notify="sms")
    again = change_preference(shared_ledger, cid, "ussd", T0 + timedelta(minutes=1), notify="sms")
    assert again.ok and not again.changed
    assert [r.source for r in changes_of(shared_ledger, cid)] == ["web"]


def test_a_new_change_supersedes_the_older_one(shared_ledger):
    cid = enrol(shared_ledger, delivery="electronic", notify="email").customer_id
    later = T0 + timedelta(days=1)

    first = change_preference(shared_ledger, cid, "web", T0, delivery="paper", address=MAILING)
    second = change_preference(shared_ledger, cid, "sms", later, notify="both")

    assert first.changed and second.changed
    old, new = changes_of(shared_ledger, cid)
    assert (old.state, new.state) == ("superseded", "open")
    assert old.settled_at.replace(tzinfo=old.settled_at.tzinfo or UTC) == later
    # the newer change builds on the older one: still paper, to the typed address
    assert (new.delivery, new.notify, new.paper_city) == ("paper", "both", "Cluj-Napoca")
    with shared_ledger.connect() as conn:
        now = standing(conn, cid)
    assert now.preference == second.preference and now.pending_change


def test_changing_back_to_the_export_is_a_change_too(shared_ledger):
    """Until an export carries the first change, going back must override it again."""
    cid = enrol(shared_ledger, delivery="electronic", notify="email").customer_id
    change_preference(shared_ledger, cid, "web", T0, notify="sms")

    back = change_preference(shared_ledger, cid, "web", T0 + timedelta(hours=1), notify="email")

    assert back.changed and back.preference == Preference("electronic", "email")
    assert [r.state for r in changes_of(shared_ledger, cid)] == ["superseded", "open"]


def test_a_paper_customer_mailed_at_the_billing_address_can_change_notices_on_the_page(
    shared_ledger,
):
    """The page's form sends the mailing-address fields empty when there is none on file;
    only a switch to paper needs an address typed."""
    cid = enrol(shared_ledger, delivery="paper", notify="email", paper_address=None).customer_id
    blank = dict.fromkeys(MAILING, "")

    outcome = change_preference(
        shared_ledger, cid, "web", T0, delivery="paper", notify="sms", address=blank
    )

    assert outcome.ok and outcome.changed
    assert outcome.preference == Preference("paper", "sms", None)
    with shared_ledger.connect() as conn:
        assert standing(conn, cid).customer.mailing_address.city == "Iași"
