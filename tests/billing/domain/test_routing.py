import pytest

from billing.domain.model import Address, Customer
from billing.domain.routing import recipient, route

HOME = Address("Str. Unirii 1", "Iași", "Iași", "700001")


def customer(
    notify="email",
    delivery="electronic",
    email="a@b.ro",
    phone="+40722123456",
    flags=(),
    paper=None,
):
    return Customer(
        customer_id="C1", name="Ana", tax_id="", address=HOME, phone=phone, email=email,
        language="ro", delivery=delivery, notify=notify, paper_address=paper, contact_flags=flags,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "channels", "fallback"),
    [
        pytest.param({}, ("email",), False, id="email"),
        pytest.param({"notify": "sms"}, ("sms",), False, id="sms"),
        pytest.param({"notify": "both"}, ("email", "sms"), False, id="both"),
        pytest.param({"notify": "none"}, (), False, id="none"),
        pytest.param({"notify": "none", "delivery": "paper"}, ("paper",), False, id="paper-only"),
        pytest.param({"delivery": "paper"}, ("email", "paper"), False, id="email-and-paper"),
        pytest.param({"email": ""}, ("sms",), True, id="no-email-falls-to-sms"),
        pytest.param({"flags": ("invalid_email",)}, ("sms",), True, id="bad-email-falls-to-sms"),
        pytest.param(
            {"notify": "sms", "phone": ""}, ("email",), True, id="no-phone-falls-to-email"
        ),
        pytest.param({"email": "", "phone": ""}, ("paper",), True, id="nothing-usable-paper"),
        pytest.param(
            {"notify": "both", "flags": ("invalid_phone",)}, ("email",), True, id="both-one-bad"
        ),
        pytest.param(
            {"notify": "both", "email": "", "phone": ""}, ("paper",), True, id="both-none-usable"
        ),
        pytest.param(
            {"email": "", "phone": "", "delivery": "paper"}, ("paper",), True, id="paper-anyway"
        ),
    ],
)
def test_route(kwargs, channels, fallback):
    found = route(customer(**kwargs))
    assert (found.channels, found.fallback) == (channels, fallback)


def test_paper_goes_to_the_mailing_address_when_given():
    mailing = Address("Str. Lungă 3", "Brașov", "Brașov", "500001")
    assert recipient(customer(paper=mailing), "paper") == "Str. Lungă 3, 500001, Brașov, Brașov, RO"
    assert recipient(customer(), "paper") == "Str. Unirii 1, 700001, Iași, Iași, RO"
