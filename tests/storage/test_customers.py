"""Who a phone number belongs to and how a customer stands, as the ledger's newest invoice
snapshot says, with the customer's own open change over it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from billing.domain.preferences import Preference
from storage.customers import customers_by_phone, standing
from storage.preferences import record_change
from tests.support.enrolled import enrol, invoice, new_phone


def test_a_number_belongs_to_the_customers_whose_newest_invoice_carries_it(shared_ledger):
    phone = new_phone()
    moved_away = enrol(shared_ledger, month=11, phone=phone)
    shared = [enrol(shared_ledger, month=12, phone=phone) for _ in range(2)]
    invoice(shared_ledger, replace(moved_away, phone=new_phone()), month=12)

    with shared_ledger.connect() as conn:
        owners = customers_by_phone(conn, phone)
        assert customers_by_phone(conn, new_phone()) == []

    assert owners == sorted(c.customer_id for c in shared)


def test_a_customer_stands_as_the_newest_snapshot_with_the_open_change_over_it(shared_ledger):
    customer = enrol(shared_ledger, month=11, notify="email")
    invoice(shared_ledger, replace(customer, email="nou@example.ro"), month=12)

    with shared_ledger.begin() as conn:
        before = standing(conn, customer.customer_id)
        record_change(
            conn, customer.customer_id, Preference("electronic", "sms"), "sms",
            datetime(2026, 12, 5, tzinfo=UTC),
        )  # fmt: skip
        after = standing(conn, customer.customer_id)
        assert standing(conn, "NOBODY") is None

    assert before.customer.email == "nou@example.ro" and not before.pending_change
    assert before.preference == Preference("electronic", "email")
    assert after.pending_change and after.preference == Preference("electronic", "sms")
    assert after.customer.notify == "sms" and after.customer.email == "nou@example.ro"
