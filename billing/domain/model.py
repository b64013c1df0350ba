"""Immutable domain values: a cycle, its customers and their charges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Cycle:
    """One billing cycle, as `cycle.json` describes it."""

    cycle_id: str
    series: str
    period_start: date
    period_end: date
    issue_date: date
    due_date: date
    currency: str = "RON"


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    city: str
    county: str
    postal_code: str
    country: str = "RO"


@dataclass(frozen=True, slots=True)
class Customer:
    """A validated customer row. `contact_flags` names what was flagged and still invoiced:
    unusable contact fields (`invalid_email`, `invalid_phone`: the notice falls back) and
    `unprintable_text` (a field holds a character the invoice font cannot draw)."""

    customer_id: str
    name: str
    tax_id: str
    address: Address
    phone: str
    email: str
    language: str
    delivery: str
    notify: str
    paper_address: Address | None = None
    contact_flags: tuple[str, ...] = ()

    @property
    def mailing_address(self) -> Address:
        """Where a paper invoice goes: the paper address when given, else the billing address."""
        return self.paper_address or self.address


CUSTOMER_FIELDS = (
    "customer_id", "name", "tax_id", "street", "city", "county", "postal_code", "country",
    "phone", "email", "language", "delivery", "notify", "paper_street", "paper_city",
    "paper_county", "paper_postal_code", "contact_flags",
)  # fmt: skip


def customer_to_row(customer: Customer) -> dict[str, str]:
    """The customer as flat text fields (CUSTOMER_FIELDS), as staging and the ledger keep it."""
    a, p = customer.address, customer.paper_address
    return {
        "customer_id": customer.customer_id, "name": customer.name, "tax_id": customer.tax_id,
        "street": a.street, "city": a.city, "county": a.county, "postal_code": a.postal_code,
        "country": a.country, "phone": customer.phone, "email": customer.email,
        "language": customer.language, "delivery": customer.delivery, "notify": customer.notify,
        "paper_street": p.street if p else "", "paper_city": p.city if p else "",
        "paper_county": p.county if p else "", "paper_postal_code": p.postal_code if p else "",
        "contact_flags": ",".join(customer.contact_flags),
    }  # fmt: skip


def customer_from_row(row: Mapping[str, str]) -> Customer:
    """The inverse of `customer_to_row` (a paper address is always Romanian)."""
    paper = None
    if row["paper_street"]:
        paper = Address(
            row["paper_street"], row["paper_city"], row["paper_county"], row["paper_postal_code"]
        )
    return Customer(
        customer_id=row["customer_id"], name=row["name"], tax_id=row["tax_id"],
        address=Address(row["street"], row["city"], row["county"], row["postal_code"], row["country"]),
        phone=row["phone"], email=row["email"], language=row["language"],
        delivery=row["delivery"], notify=row["notify"], paper_address=paper,
        contact_flags=tuple(f for f in row["contact_flags"].split(",") if f),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Charge:
    """A validated charge row; `row` is where it stood in the export (for the audit trail)."""

    customer_id: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    vat_rate: Decimal
    service_start: date | None = None
    service_end: date | None = None
    row: int = 0


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a row was quarantined (or, for contact fields, flagged)."""

    file: str
    row: int
    customer_id: str
    column: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """A small descriptor of one staged chunk: what tasks pass to each other.

    `number` is the chunk's place in the cycle (1-based), `total` how many chunks the cycle has:
    "chunk 3 of 5". Customers are in id order within and across chunks."""

    cycle_id: str
    number: int
    total: int
    customers: int
    charges: int
    first_customer: str
    last_customer: str

    def as_dict(self) -> dict:
        return {
            "cycle_id": self.cycle_id,
            "number": self.number,
            "total": self.total,
            "customers": self.customers,
            "charges": self.charges,
            "first_customer": self.first_customer,
            "last_customer": self.last_customer,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ChunkRef:
        if "number" not in data:  # staged before the fields were renamed from chunk/chunks
            data = {**data, "number": data["chunk"], "total": data["chunks"]}
        return cls(**{k: data[k] for k in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Supplier:
    """The issuing company, as printed on every invoice (Fiscal Code art. 319 para. 20 (d))."""

    name: str
    cui: str  # VAT registration code, e.g. RO18547290
    trade_register: str  # Reg. Com. number, e.g. J40/1234/2001
    address: str
    iban: str
    bank: str
    share_capital: str  # e.g. "1.000.000 lei"
    email: str = ""
    phone: str = ""
    website: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    line_no: int
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Decimal
    vat_rate: Decimal
    service_start: date | None = None
    service_end: date | None = None


@dataclass(frozen=True, slots=True)
class VatLine:
    """Taxable base and VAT of one rate on an issued invoice."""

    rate: Decimal
    base: Decimal
    vat: Decimal


@dataclass(frozen=True, slots=True)
class IssuedInvoice:
    """An invoice as the ledger holds it: immutable once issued, the source of every rendering."""

    number: str
    series: str
    cycle_id: str
    customer: Customer
    issue_date: date
    due_date: date
    period_start: date
    period_end: date
    currency: str
    lines: tuple[InvoiceLine, ...]
    vat: tuple[VatLine, ...]
    net_total: Decimal
    vat_total: Decimal
    total: Decimal
