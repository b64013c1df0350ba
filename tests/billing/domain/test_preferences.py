"""How a customer's preference meets the billing export: carried (so settled) or applied over it."""

from __future__ import annotations

import pytest

from billing.domain.model import Address
from billing.domain.preferences import Preference, apply_preference, reflects
from tests.support.factory import CUSTOMER, customer

MAILING = Address("Str. Ștefan cel Mare nr. 12", "Cluj-Napoca", "Cluj", "400001")
BILLING = CUSTOMER.address  # Iași


@pytest.mark.parametrize(
    ("export", "preference", "carried"),
    [
        pytest.param(
            customer(delivery="paper", paper_address=MAILING), Preference("paper", "email", MAILING),
            True, id="paper-same-address",
        ),
        pytest.param(
            customer(delivery="paper", paper_address=Address(
                "STR. ȘTEFAN CEL MARE  NR. 12", "cluj-napoca", "CLUJ", "400001")),
            Preference("paper", "email", MAILING), True, id="paper-address-written-otherwise",
        ),
        pytest.param(
            customer(delivery="paper"), Preference("paper", "email", BILLING),
            True, id="paper-to-the-billing-address-the-export-keeps-as-no-mailing-address",
        ),
        pytest.param(
            customer(delivery="paper"), Preference("paper", "email", MAILING),
            False, id="paper-another-address",
        ),
        pytest.param(
            customer(delivery="electronic", paper_address=MAILING), Preference("electronic", "email"),
            True, id="electronic-whatever-paper-address",
        ),
        pytest.param(
            customer(notify="email"), Preference("electronic", "sms"), False, id="other-notices",
        ),
    ],
)  # fmt: skip
def test_an_export_carries_a_preference(export, preference, carried):
    assert reflects(export, preference) is carried


def test_applying_a_preference_keeps_the_rest_of_the_export():
    export = customer(delivery="electronic", notify="email", paper_address=MAILING)

    paper = apply_preference(export, Preference("paper", "none"))
    elsewhere = apply_preference(export, Preference("paper", "both", BILLING))

    assert (paper.delivery, paper.notify, paper.mailing_address) == ("paper", "none", MAILING)
    assert elsewhere.mailing_address == BILLING
    assert (paper.name, paper.email, paper.address) == (export.name, export.email, export.address)
