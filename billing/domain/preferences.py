"""A customer's own choice of how invoices reach them, made on the self-service page, the 411
line, the *100# menu or by SMS, and how it meets the billing export.

The billing export stays the system of record, but it learns of a change only when the billing
system imports `invoices preferences export`. Until then the newest change overrides the export
at issuing; once an export carries the same choice, the change is settled and never applied
again (a later change made in the billing system itself then wins, as it should).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from billing.domain.model import Address, Customer
from billing.domain.validation import DELIVERIES, NOTIFY_CHOICES

SOURCES = ("web", "ivr", "ussd", "sms")


@dataclass(frozen=True, slots=True)
class Preference:
    """The whole preference after a change: delivery, notices, and the mailing address for
    paper (None: the billing address)."""

    delivery: str
    notify: str
    paper_address: Address | None = None

    def __post_init__(self) -> None:
        if self.delivery not in DELIVERIES:
            raise ValueError(f"delivery must be one of {DELIVERIES}, not {self.delivery!r}")
        if self.notify not in NOTIFY_CHOICES:
            raise ValueError(f"notify must be one of {NOTIFY_CHOICES}, not {self.notify!r}")


def preference_of(customer: Customer) -> Preference:
    """The preference the export (or an invoice's snapshot) carries for `customer`."""
    return Preference(customer.delivery, customer.notify, customer.paper_address)


def reflects(customer: Customer, preference: Preference) -> bool:
    """True when the export already carries `preference` for `customer`. A paper address is
    compared only when paper is chosen: for electronic delivery it does not matter. It is
    compared with where the export mails paper, so a choice of paper to the billing address
    (what a phone channel records) is carried by an export with no separate mailing address."""
    if (customer.delivery, customer.notify) != (preference.delivery, preference.notify):
        return False
    if preference.delivery != "paper" or preference.paper_address is None:
        return True
    return _same_address(customer.mailing_address, preference.paper_address)


def apply_preference(customer: Customer, preference: Preference) -> Customer:
    """`customer` with `preference` in place of what the export said. An electronic choice
    keeps the paper address on file (it is the customer's, not the choice's)."""
    paper = preference.paper_address if preference.paper_address else customer.paper_address
    return replace(
        customer, delivery=preference.delivery, notify=preference.notify, paper_address=paper
    )


def _same_address(a: Address | None, b: Address | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(
        _fold(getattr(a, f)) == _fold(getattr(b, f))
        for f in ("street", "city", "county", "postal_code")
    )


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()
