from datetime import date
from decimal import Decimal

import pytest

from billing.domain.model import Cycle
from billing.domain.validation import (
    ChargeValidator,
    CustomerValidator,
    county_code,
    normalize_text,
    valid_cnp,
    valid_cui,
    validate_cycle,
)
from billing.domain.vat import rates_in_force, rates_in_period

CYCLE = Cycle(
    "2026-11", "OR", date(2026, 10, 1), date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 21)
)
STRADDLING = Cycle(
    "2025-08", "OR", date(2025, 7, 15), date(2025, 8, 14), date(2025, 8, 15), date(2025, 9, 5)
)

GOOD_CUSTOMER = {
    "customer_id": "C1", "name": "Ștefan Mureșan", "tax_id": "", "street": "Str. Unirii 1",
    "city": "Iași", "county": "Iași", "postal_code": "700001", "country": "RO",
    "phone": "+40722123456", "email": "stefan@example.ro", "language": "ro",
    "delivery": "electronic", "notify": "both",
}  # fmt: skip
GOOD_CHARGE = {"customer_id": "C1", "description": "Abonament", "quantity": "1",
               "unit_price": "50.00", "vat_rate": "21"}  # fmt: skip


def test_vat_rates_change_on_2025_08_01():
    assert rates_in_force(date(2025, 7, 31)) == {Decimal(r) for r in ("19", "9", "5", "0")}
    assert rates_in_force(date(2025, 8, 1)) == {Decimal(r) for r in ("21", "11", "0")}
    assert rates_in_period(date(2025, 7, 15), date(2025, 8, 14)) == {
        Decimal(r) for r in ("21", "19", "11", "9", "5", "0")
    }


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        pytest.param({"name": ""}, "name", "missing", id="empty-name"),
        pytest.param(
            {"customer_id": "C 1/.."}, "customer_id", "invalid_id", id="id-unsafe-for-keys"
        ),
        pytest.param(
            {"tax_id": "1800101221145"}, "tax_id", "invalid_tax_id", id="cnp-bad-check-digit"
        ),
        pytest.param(
            {"postal_code": "12AB"}, "postal_code", "invalid_postal_code", id="ro-postal-code"
        ),
        pytest.param({"country": "XX"}, "country", "invalid_country", id="country"),
        pytest.param({"county": "Atlantida"}, "county", "invalid_county", id="county"),
        pytest.param({"notify": "fax"}, "notify", "invalid_choice", id="notify"),
        pytest.param({"language": "fr"}, "language", "invalid_choice", id="language"),
        pytest.param({"delivery": ""}, "delivery", "missing", id="delivery-empty"),
        pytest.param(
            {"paper_street": "Str. X 1"}, "paper_city", "incomplete_paper_address", id="paper"
        ),
    ],
)
def test_customer_problems_name_column_and_reason(change, column, reason):
    customer, problems = CustomerValidator("customers.csv").validate(7, GOOD_CUSTOMER | change)
    assert customer is None
    assert [(p.file, p.row, p.column, p.reason) for p in problems] == [
        ("customers.csv", 7, column, reason)
    ]


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        pytest.param({"email": "ion.popescu@@example"}, "invalid_email", id="email"),
        pytest.param({"phone": "0722 123 456"}, "invalid_phone", id="phone-not-e164"),
    ],
)
def test_unusable_contact_is_flagged_not_quarantined(change, flag):
    customer, problems = CustomerValidator("customers.csv").validate(3, GOOD_CUSTOMER | change)
    assert customer is not None and customer.contact_flags == (flag,)
    assert [p.reason for p in problems] == [flag]


def test_text_is_normalised_to_comma_below_and_folded():
    customer, _ = CustomerValidator("c.csv").validate(
        2, GOOD_CUSTOMER | {"name": "  Ştefan\r\nŢuţuianu ", "county": "iasi", "country": ""}
    )
    assert customer.name == "Ștefan Țuțuianu"
    assert customer.address.country == "RO"
    assert normalize_text("şţŞŢ") == "\u0219\u021b\u0218\u021a"


def test_paper_address_is_kept():
    paper = {"paper_street": "Str. Lungă 3", "paper_city": "Brașov", "paper_county": "Brașov",
             "paper_postal_code": "500001"}  # fmt: skip
    customer, problems = CustomerValidator("c.csv").validate(2, GOOD_CUSTOMER | paper)
    assert problems == [] and customer.mailing_address.city == "Brașov"


@pytest.mark.parametrize(
    ("code", "valid"),
    [("1800101221144", True), ("2950615400011", True), ("1800101221145", False),
     ("1801301221144", False), ("RO18547290", True), ("18547290", True), ("18547291", False),
     ("14399840", True)],
)  # fmt: skip
def test_tax_codes(code, valid):
    assert (valid_cnp(code) or valid_cui(code)) is valid


@pytest.mark.parametrize(
    ("cycle", "change", "column", "reason"),
    [
        pytest.param(
            CYCLE, {"vat_rate": "19"}, "vat_rate", "invalid_vat_rate", id="19-after-aug-2025"
        ),
        pytest.param(
            CYCLE, {"vat_rate": "9"}, "vat_rate", "invalid_vat_rate", id="9-after-aug-2025"
        ),
        pytest.param(
            CYCLE, {"unit_price": "12,50"}, "unit_price", "invalid_decimal", id="comma-decimal"
        ),
        pytest.param(CYCLE, {"quantity": "abc"}, "quantity", "invalid_decimal", id="quantity-text"),
        pytest.param(CYCLE, {"quantity": "1e3"}, "quantity", "invalid_decimal", id="exponent"),
        pytest.param(CYCLE, {"description": ""}, "description", "missing", id="description"),
        pytest.param(
            CYCLE,
            {"service_start": "2026-10-31", "service_end": "2026-10-01"},
            "service_end",
            "invalid_service_period",
            id="period-reversed",
        ),  # fmt: skip
        pytest.param(
            CYCLE, {"service_start": "31.10.2026"}, "service_start", "invalid_date", id="date"
        ),
        pytest.param(
            STRADDLING,
            {"vat_rate": "21", "service_start": "2025-07-15", "service_end": "2025-07-31"},
            "vat_rate",
            "invalid_vat_rate",
            id="21-for-july-2025",
        ),  # fmt: skip
    ],
)
def test_charge_problems(cycle, change, column, reason):
    charge, problems = ChargeValidator("charges.csv", cycle).validate(9, GOOD_CHARGE | change)
    assert charge is None
    assert [(p.file, p.row, p.column, p.reason) for p in problems] == [
        ("charges.csv", 9, column, reason)
    ]


@pytest.mark.parametrize(
    ("cycle", "rate", "start", "end"),
    [
        pytest.param(CYCLE, "21", "", "", id="standard"),
        pytest.param(CYCLE, "0", "", "", id="zero"),
        pytest.param(STRADDLING, "19", "", "", id="straddling-old"),
        pytest.param(STRADDLING, "21", "", "", id="straddling-new"),
        pytest.param(STRADDLING, "19", "2025-07-15", "2025-07-31", id="july-line-old-rate"),
        pytest.param(STRADDLING, "11", "2025-08-01", "2025-08-14", id="august-line-new-rate"),
    ],
)
def test_charge_rates_in_force(cycle, rate, start, end):
    raw = GOOD_CHARGE | {"vat_rate": rate, "service_start": start, "service_end": end}
    charge, problems = ChargeValidator("charges.csv", cycle).validate(2, raw)
    assert problems == [] and charge.vat_rate == Decimal(rate)


def test_counties_with_or_without_diacritics():
    assert county_code("Iași") == county_code("IASI") == county_code("Judetul Iasi") == "IS"
    assert county_code("Sector 3") == county_code("București") == "B"
    assert county_code("Atlantida") is None


def test_cycle_json_errors_are_all_listed():
    cycle, errors = validate_cycle(
        {"cycle_id": "2026-12", "series": "or", "period_start": "2026-10-01",
         "period_end": "2026-09-30", "issue_date": "2026-11-01", "due_date": "x", "currency": "EUR"},
        "2026-11",
    )  # fmt: skip
    assert cycle is None
    assert len(errors) == 5
    assert any(e.startswith("cycle_id:") for e in errors)
    assert any(e.startswith("currency:") for e in errors)


def no_rockets(text):
    return "🚀" if "🚀" in text else None


def test_a_name_the_invoice_font_cannot_draw_is_flagged_and_the_customer_kept():
    customer, problems = CustomerValidator("c.csv", no_rockets).validate(
        4, GOOD_CUSTOMER | {"name": "Ion 🚀 Popescu"}
    )
    assert customer is not None and customer.name == "Ion 🚀 Popescu"
    assert customer.contact_flags == ("unprintable_text",)
    assert [(p.row, p.column, p.reason) for p in problems] == [(4, "name", "unprintable_text")]
    assert "U+1F680" in problems[0].detail
    # without a font every character is drawable: the domain's rules alone
    customer, problems = CustomerValidator("c.csv").validate(
        4, GOOD_CUSTOMER | {"name": "Ion 🚀 Popescu"}
    )
    assert customer is not None and problems == [] and customer.contact_flags == ()


def test_a_description_the_invoice_font_cannot_draw_is_flagged_and_the_charge_kept():
    charge, problems = ChargeValidator("ch.csv", CYCLE, no_rockets).validate(
        9, GOOD_CHARGE | {"description": "Roaming 🚀"}
    )
    assert charge is not None and charge.description == "Roaming 🚀"
    assert [(p.column, p.reason) for p in problems] == [("description", "unprintable_text")]


def test_an_unprintable_flag_comes_beside_the_contact_flags():
    customer, problems = CustomerValidator("c.csv", no_rockets).validate(
        4, GOOD_CUSTOMER | {"name": "Ion 🚀", "email": "ion@@x"}
    )
    assert customer.contact_flags == ("invalid_email", "unprintable_text")
    assert sorted(p.reason for p in problems) == ["invalid_email", "unprintable_text"]


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        pytest.param({"name": "Ion\x07 🚀"}, "name", "invalid_text", id="control"),
        pytest.param({"name": "Ion \udcff🚀"}, "name", "invalid_encoding", id="not-utf8"),
        pytest.param({"street": "Str. 🚀 " * 40}, "street", "too_long", id="too-long"),
    ],
)
def test_what_cannot_be_billed_is_still_quarantined_even_if_unprintable(change, column, reason):
    customer, problems = CustomerValidator("c.csv", no_rockets).validate(4, GOOD_CUSTOMER | change)
    assert customer is None
    assert [(p.column, p.reason) for p in problems] == [(column, reason)]


@pytest.mark.parametrize(
    "control",
    ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
     "\u2066", "\u2067", "\u2068", "\u2069"],
)  # fmt: skip
def test_bidirectional_controls_are_stripped(control):
    customer, problems = CustomerValidator("c.csv").validate(
        4, GOOD_CUSTOMER | {"name": f"Ion {control}ucsepoP", "street": f"Str. Unirii{control} 1"}
    )
    assert problems == []
    assert customer.name == "Ion ucsepoP" and customer.address.street == "Str. Unirii 1"


def test_a_right_to_left_override_and_mark_in_a_name_are_stripped():
    name = "Ana \u202eanaideM\u202c Pop\u200fescu"
    assert normalize_text(name) == "Ana anaideM Popescu"
    charge, _ = ChargeValidator("ch.csv", CYCLE).validate(
        2, GOOD_CHARGE | {"description": "Abonament \u202e01 liboM"}
    )
    assert charge.description == "Abonament 01 liboM"


@pytest.mark.parametrize(
    "name",
    [
        "Ștefănescu Țurcanu Îonuț-Mădălin",
        "ȘȚĂÂÎ șțăâî",
        "Societatea Agricolă Mărțișor din Râșnov SRL",
    ],
)
def test_romanian_names_with_comma_below_letters_are_unchanged(name):
    assert normalize_text(name) == name
    customer, problems = CustomerValidator("c.csv").validate(4, GOOD_CUSTOMER | {"name": name})
    assert problems == [] and customer.name == name and customer.contact_flags == ()
