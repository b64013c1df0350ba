"""The self-service page as a customer walks it (contract 6): the phone form, the code by SMS,
the account with the latest invoice and the last six, downloads, the preference form and the
language switch."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from storage.customers import standing
from storage.ledger import invoice_documents, invoices, otp_challenges, preference_changes

PHONE_INVALID = "Numărul nu pare un număr de telefon din România"


class Elements(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


def money(total: Decimal) -> str:
    """As a Romanian reads an amount: 1.234,50."""
    return f"{total:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")


def day(value: date) -> str:
    return value.strftime("%d.%m.%Y")


def ledger_invoices(runtime, customer_id: str) -> list:
    """The customer's invoices, newest first, with their archived document's sha256."""
    query = (
        sa.select(invoices, invoice_documents.c.sha256)
        .join(invoice_documents, invoice_documents.c.number == invoices.c.number)
        .where(invoices.c.customer_id == customer_id)
        .order_by(invoices.c.issue_date.desc())
    )
    with runtime.ledger.connect() as conn:
        return list(conn.execute(query))


# --- the phone form and the code -------------------------------------------------------------


def test_the_home_page_asks_for_a_phone_number(visitor):
    home = visitor().get("/")
    assert home.status_code == 200
    page = Elements(home.text)
    form = page.find("form", method="post", action="/")
    assert form
    phone = page.find("input", type="tel", name="phone")
    assert len(phone) == 1
    assert page.find("label", **{"for": phone[0]["id"]})
    assert not page.find("script")
    assert "script-src" not in home.headers["content-security-policy"]


@pytest.mark.parametrize(
    "typed",
    ["0{n}", "0{a} {b} {c}", "+40{n}", "+40 {a} {b} {c}", "0040{n}"],
    ids=["national", "national-spaced", "e164", "international-spaced", "0040"],
)
def test_a_romanian_number_in_any_form_gets_a_code_by_sms(typed, portal_sample, visitor, outbox):
    """The answer is the code form (showing only the number's last three digits) and the SMS
    outbox gets one JSON line: the E.164 number and a text holding the 6-digit code."""
    phone = portal_sample.phone
    n = phone[3:]
    written = typed.format(n=n, a=n[:3], b=n[3:6], c=n[6:])
    before = outbox.path.read_text("utf-8").splitlines()
    v = visitor()
    answer, code = v.ask_code(phone, typed=written)
    assert answer.status_code == 200
    page = Elements(answer.text)
    assert page.find("input", name="code")
    assert page.find("form", method="post", action="/code")
    assert f"07•• ••• {phone[-3:]}" in answer.text
    assert n not in answer.text

    new_lines = outbox.path.read_text("utf-8").splitlines()[len(before) :]
    assert len(new_lines) == 1
    message = json.loads(new_lines[0])
    assert message["recipient"] == phone
    assert re.search(rf"\b{code}\b", message["text"])
    assert re.fullmatch(r"\d{6}", code)


@pytest.mark.parametrize(
    "typed",
    ["12345", "0822 123 456", "+44 20 7946 0958", "07231234567", "telefon"],
    ids=["short", "no-such-prefix", "foreign", "too-long", "letters"],
)
def test_a_number_that_is_not_romanian_is_refused(typed, portal_runtime, visitor, outbox):
    v = visitor()
    v.get("/")
    sent = len(outbox.lines())
    answer = v.post("/", {"phone": typed})
    assert answer.status_code == 422
    assert PHONE_INVALID in answer.text
    field = Elements(answer.text).find("input", type="tel", name="phone")[0]
    assert field["value"] == typed and field["aria-invalid"] == "true"
    assert len(outbox.lines()) == sent
    with portal_runtime.ledger.connect() as conn:
        asked = conn.execute(sa.select(sa.func.count()).select_from(otp_challenges)).scalar()
    assert asked == 0


def test_an_unknown_number_gets_the_code_form_and_no_sms(portal_sample, visitor, outbox):
    sent = len(outbox.lines())
    answer, code = visitor().ask_code(portal_sample.unknown_phone)
    assert answer.status_code == 200 and code is None
    assert Elements(answer.text).find("input", name="code")
    assert len(outbox.lines()) == sent


def test_the_code_form_comes_back_while_the_code_can_be_entered(portal_sample, visitor, clock):
    v = visitor()
    v.ask_code(portal_sample.phone)
    again = v.get("/code")
    assert again.status_code == 200 and Elements(again.text).find("input", name="code")
    clock.advance(900)
    assert v.get("/code").headers["location"] == "/"
    assert visitor().get("/code").headers["location"] == "/"


# --- the account -----------------------------------------------------------------------------


def test_the_right_code_opens_the_account_with_the_latest_invoice(
    portal_sample, portal_runtime, visitor
):
    v = visitor()
    _, code = v.ask_code(portal_sample.phone)
    answer = v.enter_code(code)
    assert answer.status_code == 303 and answer.headers["location"] == "/account"
    account = v.get("/account")
    assert account.status_code == 200
    assert account.headers["cache-control"] == "no-store"

    latest = ledger_invoices(portal_runtime, portal_sample.customer_id)[0]
    assert latest.cycle_id == portal_sample.cycles[-1]
    section = re.search(r'<section class="latest".*?</section>', account.text, re.S).group(0)
    assert f'<dd class="number">{latest.number}</dd>' in section
    assert f"{day(latest.period_start)} – {day(latest.period_end)}" in section
    assert f"{money(latest.total)} lei" in section
    assert day(latest.due_date) in section
    assert f'href="/account/invoices/{latest.number}.pdf"' in section


def test_the_account_lists_the_last_six_newest_first(portal_sample, portal_runtime, visitor):
    """Seven cycles issued: the six newest are listed, newest first; the oldest is not."""
    from billing.stages.view import last_invoices

    v = visitor()
    v.sign_in(portal_sample.phone)
    account = v.get("/account")
    listed = re.search(r'<ol class="invoices">.*?</ol>', account.text, re.S).group(0)
    numbers = re.findall(r'<li data-number="([^"]+)"', listed)

    issued = ledger_invoices(portal_runtime, portal_sample.customer_id)
    assert len(issued) == len(portal_sample.cycles) == 7
    assert numbers == [i.number for i in issued[:6]]
    assert issued[6].number not in account.text
    view = last_invoices(portal_runtime.ledger, portal_runtime.archive, portal_sample.customer_id)
    assert numbers == [i["number"] for i in view]  # what `invoices view` lists
    for invoice in issued[:6]:
        assert f"{money(invoice.total)} lei" in listed
        assert f"{day(invoice.period_start)} – {day(invoice.period_end)}" in listed


def number_of(link: str) -> str:
    return link.rsplit("/", 1)[1].removesuffix(".pdf")


def test_each_download_is_the_archived_pdf(portal_sample, portal_runtime, visitor):
    """Every invoice listed downloads as the PDF the archive holds (its sha256 is the
    ledger's); `?view=1` opens it in the browser instead."""
    v = visitor()
    v.sign_in(portal_sample.phone)
    account = v.get("/account")
    links = list(dict.fromkeys(re.findall(r'href="(/account/invoices/[^"?]+\.pdf)"', account.text)))
    issued = {i.number: i for i in ledger_invoices(portal_runtime, portal_sample.customer_id)}
    assert len(links) == 6
    for link in links:
        number = number_of(link)
        pdf = v.get(link)
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == f'attachment; filename="{number}.pdf"'
        assert pdf.headers["cache-control"] == "no-store"
        assert pdf.content.startswith(b"%PDF")
        assert hashlib.sha256(pdf.content).hexdigest() == issued[number].sha256
    shown = v.get(f"{links[0]}?view=1")
    assert shown.headers["content-disposition"].startswith("inline;")
    assert hashlib.sha256(shown.content).hexdigest() == issued[number_of(links[0])].sha256


# --- preferences -----------------------------------------------------------------------------

NEW_ADDRESS = {
    "paper_street": "Str. Republicii nr. 12, bl. A, ap. 3",
    "paper_city": "Brașov",
    "paper_county": "Brașov",
    "paper_postal_code": "500030",
}


def test_switching_to_paper_with_a_new_address(portal_sample, portal_runtime, visitor, clock):
    """The change is recorded as made on the page and is the customer's standing preference
    for the next cycle; the page says so and shows it."""
    cid = portal_sample.customer_id
    v = visitor()
    v.sign_in(portal_sample.phone)
    with portal_runtime.ledger.connect() as conn:
        notify = standing(conn, cid).preference.notify
    saved = v.post(
        "/account/preferences",
        {"customer_id": cid, "delivery": "paper", "notify": notify, **NEW_ADDRESS},
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/account?done=saved#prefs"

    with portal_runtime.ledger.connect() as conn:
        rows = list(
            conn.execute(
                sa.select(preference_changes).where(preference_changes.c.customer_id == cid)
            )
        )
        now = standing(conn, cid)
    assert len(rows) == 1
    row = rows[0]
    assert (row.source, row.state, row.delivery, row.notify) == ("web", "open", "paper", notify)
    assert row.changed_at.replace(tzinfo=None) == clock().replace(tzinfo=None)
    assert {f: getattr(row, f) for f in NEW_ADDRESS} == NEW_ADDRESS
    assert now.pending_change and now.preference.delivery == "paper"
    address = now.preference.paper_address
    assert (address.street, address.city, address.county, address.postal_code) == tuple(
        NEW_ADDRESS.values()
    )

    account = v.get("/account?done=saved")
    assert "Am salvat alegerea ta." in account.text
    assert "Ai o schimbare înregistrată" in account.text
    page = Elements(account.text)
    assert page.find("input", type="radio", name="delivery", value="paper")[0].get("checked") == ""
    for name, value in NEW_ADDRESS.items():
        assert page.find("input", name=name)[0]["value"] == value

    same = v.post(
        "/account/preferences",
        {"customer_id": cid, "delivery": "paper", "notify": notify, **NEW_ADDRESS},
    )
    assert same.headers["location"] == "/account?done=unchanged#prefs"


@pytest.mark.parametrize(
    "field, value, label, reason",
    [
        ("paper_postal_code", "5000", "Codul poștal (6 cifre)", "codul poștal are 6 cifre"),
        ("paper_county", "Atlantida", "Județul (sau sectorul, în București)", "nu este un județ"),
        ("paper_street", "", "Strada, numărul, blocul, apartamentul", "câmpul este gol"),
    ],
    ids=["postal-code", "county", "street"],
)
def test_an_invalid_address_is_refused_naming_the_field(
    field, value, label, reason, portal_sample, portal_runtime, visitor
):
    cid = portal_sample.customer_id
    v = visitor()
    v.sign_in(portal_sample.phone)
    typed = {**NEW_ADDRESS, field: value}
    answer = v.post(
        "/account/preferences",
        {"customer_id": cid, "delivery": "paper", "notify": "email", **typed},
    )
    assert answer.status_code == 422
    alert = re.search(r'<div class="error" role="alert">.*?</div>', answer.text, re.S).group(0)
    assert label in alert and reason in alert
    page = Elements(answer.text)
    assert page.find("input", name=field)[0].get("aria-invalid") == "true"
    for name, kept in typed.items():  # what the customer typed is still there
        assert page.find("input", name=name)[0]["value"] == kept
    with portal_runtime.ledger.connect() as conn:
        recorded = conn.execute(sa.select(sa.func.count()).select_from(preference_changes)).scalar()
    assert recorded == 0


def test_another_customers_preferences_cannot_be_changed(portal_sample, portal_runtime, visitor):
    v = visitor()
    v.sign_in(portal_sample.phone)
    answer = v.post(
        "/account/preferences",
        {"customer_id": portal_sample.other_customer_id, "delivery": "electronic", "notify": "sms"},
    )
    assert answer.status_code == 404
    with portal_runtime.ledger.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(preference_changes)).scalar() == 0
        )


# --- language and logout ---------------------------------------------------------------------


def test_english_on_request(portal_sample, visitor):
    v = visitor()
    v.get("/")
    switched = v.post("/language", {"lang": "en", "next": "/"})
    assert switched.status_code == 303 and switched.headers["location"] == "/"
    assert v.cookie("portal_lang") == "en"
    home = v.get("/")
    assert '<html lang="en">' in home.text and "See your invoice" in home.text
    answer, _ = v.ask_code(portal_sample.phone)
    assert "Enter the code you received" in answer.text
    v.sign_in(portal_sample.phone)
    account = v.get("/account")
    assert "Your account" in account.text and "Last six invoices" in account.text

    v.post("/language", {"lang": "ro", "next": "/account"})
    assert "Contul tău" in v.get("/account").text


def test_the_language_switch_works_on_the_code_page_of_a_signed_in_browser(portal_sample, visitor):
    """/code and /sms-code carry a form token of no session, even in a browser that holds one:
    their language switch must still work."""
    v = visitor()
    v.sign_in(portal_sample.phone)
    for page in ("/sms-code", "/code"):
        v.ask_code(portal_sample.phone) if page == "/code" else v.get(page)
        switched = v.post("/language", {"lang": "en", "next": page})
        assert switched.status_code == 303, (page, switched.text)
        v.post("/language", {"lang": "ro", "next": page})


@pytest.mark.parametrize("back", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_the_language_switch_returns_only_to_this_page(back, visitor):
    v = visitor()
    v.get("/")
    switched = v.post("/language", {"lang": "en", "next": back})
    assert switched.status_code == 303 and switched.headers["location"] == "/"


def test_logout(portal_sample, visitor):
    v = visitor()
    v.sign_in(portal_sample.phone)
    out = v.post("/logout")
    assert out.status_code == 200 and "Ai ieșit din cont." in out.text
    assert v.get("/account").headers["location"] == "/"
    assert v.get("/").status_code == 200
