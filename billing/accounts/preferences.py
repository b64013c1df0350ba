"""A customer's change of delivery (electronic or paper) and notices (e-mail, SMS, both, none),
from the page or a phone channel: checked against what the ledger knows of the customer, then
recorded (storage.preferences) for the next cycle to honour.

Refused, with the field and the reason:
- paper without a mailing address: the page asks for one (validated like contract 1); a phone
  channel uses the address on file (the paper address, else a Romanian billing address) and is
  refused when there is none;
- e-mail notices without a usable e-mail address on file, SMS notices without a usable phone.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from billing.domain.model import Customer, customer_to_row
from billing.domain.preferences import DELIVERIES, NOTIFY_CHOICES, SOURCES, Preference
from billing.domain.routing import CHOSEN, usable
from billing.domain.validation import check_paper_address
from storage.customers import standing
from storage.preferences import record_change


@dataclass(frozen=True)
class Refusal:
    field: str
    reason: str  # a stable code: no_customer, invalid_choice, no_mailing_address, no_email, ...
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    changed: bool  # False: the preference asked for was already in force
    preference: Preference | None = None
    refusals: tuple[Refusal, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.refusals


def change_preference(
    engine: Engine,
    customer_id: str,
    source: str,
    now: datetime,
    delivery: str | None = None,
    notify: str | None = None,
    address: Mapping[str, str] | None = None,
    conn: Connection | None = None,
) -> Outcome:
    """Set the customer's delivery and/or notices (None keeps the current one); `address`
    (paper_street, paper_city, paper_county, paper_postal_code) is the mailing address typed on
    the page, None for a phone channel. With `conn`, the change is made in the caller's open
    transaction (so it commits with whatever else the caller records), else in one of its own."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    with engine.begin() if conn is None else nullcontext(conn) as conn:
        found = standing(conn, customer_id)
        if found is None:
            return Outcome(False, refusals=(Refusal("customer", "no_customer"),))
        current = found.preference
        delivery = (delivery or current.delivery).strip().lower()
        notify = (notify or current.notify).strip().lower()
        refusals = []
        if delivery not in DELIVERIES:
            refusals.append(
                Refusal("delivery", "invalid_choice", f"one of {', '.join(DELIVERIES)}")
            )
        if notify not in NOTIFY_CHOICES:
            refusals.append(
                Refusal("notify", "invalid_choice", f"one of {', '.join(NOTIFY_CHOICES)}")
            )
        if refusals:
            return Outcome(False, refusals=tuple(refusals))
        for channel in CHOSEN[notify]:
            if not usable(found.customer, channel):
                refusals.append(Refusal("notify", f"no_{channel}", f"no usable {channel} on file"))
        paper = current.paper_address
        if delivery == "paper":
            if address is not None and any(v.strip() for v in address.values()):
                paper, problems = check_paper_address(dict(address))
                refusals.extend(Refusal(p.column, p.reason, p.detail) for p in problems)
            elif address is not None and paper is None and current.delivery != "paper":
                # a switch to paper needs one typed; paper already goes to the billing address
                refusals.append(Refusal("paper_street", "no_mailing_address", "give an address"))
            elif address is None:
                paper = paper or _billing_address_for_paper(found.customer)
                if paper is None:
                    refusals.append(
                        Refusal("delivery", "no_mailing_address", "no mailing address on file")
                    )
        if refusals:
            return Outcome(False, refusals=tuple(refusals))
        wanted = Preference(delivery, notify, paper)
        if wanted == current:  # already in force (from the export or an earlier change)
            return Outcome(False, wanted)
        record_change(conn, customer_id, wanted, source, now)
        return Outcome(True, wanted)


def _billing_address_for_paper(customer: Customer):
    """The billing address as a paper mailing address, when it is a valid Romanian one."""
    if customer.address.country != "RO":
        return None
    row = customer_to_row(customer)
    address, problems = check_paper_address(
        {f"paper_{k}": row[k] for k in ("street", "city", "county", "postal_code")}
    )
    return None if problems else address
