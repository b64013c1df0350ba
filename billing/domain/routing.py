"""Which notices an invoice gets, from the customer's preferences and usable contacts.

`notify` (email / sms / both / none) chooses the messages; `delivery = paper` adds the invoice
to the cycle's print batch. A chosen channel whose contact is missing or unusable falls back to
the other channel when that one is usable, else to paper; each such case counts as a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from billing.domain.model import Customer
from billing.domain.notices import Channel

EMAIL, SMS, PAPER = Channel.EMAIL, Channel.SMS, Channel.PAPER
CHOSEN = {"email": (EMAIL,), "sms": (SMS,), "both": (EMAIL, SMS), "none": ()}


@dataclass(frozen=True)
class Route:
    channels: tuple[str, ...]  # in order: email, sms, paper
    fallback: bool  # a chosen channel was unusable and another one (or paper) stands in


def usable(customer: Customer, channel: str) -> bool:
    if channel == EMAIL:
        return bool(customer.email) and "invalid_email" not in customer.contact_flags
    return bool(customer.phone) and "invalid_phone" not in customer.contact_flags


def route(customer: Customer) -> Route:
    """The channels of one customer's notice (see the module docstring)."""
    chosen = CHOSEN[customer.notify]
    channels = {c for c in chosen if usable(customer, c)}
    fallback = len(channels) < len(chosen)
    if fallback and not channels:
        other = {EMAIL: SMS, SMS: EMAIL}[chosen[0]] if len(chosen) == 1 else None
        channels = {other} if other and usable(customer, other) else {PAPER}
    if customer.delivery == "paper":
        channels.add(PAPER)
    return Route(tuple(c for c in (EMAIL, SMS, PAPER) if c in channels), fallback)


def recipient(customer: Customer, channel: str) -> str:
    """Where the notice goes: the e-mail address, the phone number, or the mailing address."""
    if channel == EMAIL:
        return customer.email
    if channel == SMS:
        return customer.phone
    a = customer.mailing_address
    return ", ".join(
        part for part in (a.street, a.postal_code, a.city, a.county, a.country) if part
    )
