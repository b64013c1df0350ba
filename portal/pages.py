"""The customer's pages: phone number, code, account (latest invoice, last six, preferences).

    GET  /                 the phone form (signed in: to /account)
    POST /                 send a code; answers with the code form, the same for any number
    GET  /code             the code form again, while the code can be entered
    POST /code             check the code; right: a new session and /account
    GET  /sms-code         number and code together, for a code asked by SMS
    POST /sms-code         check them
    GET  /account          latest invoice, the last six, the preference form
    GET  /account/invoices/<number>.pdf   a PDF of the signed-in customer's own (else 404)
    POST /account/preferences             record a change of delivery / notices
    POST /logout           end the session on the server
    POST /language         Romanian or English (a cookie)

No GET changes anything on the server. Every POST passes `security.same_site_post` and its form
token (`security.valid_csrf`). Nothing here logs a phone number, a code, a cookie or a link.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from billing.accounts.codes import Check, Verdict
from billing.accounts.limits import Limit
from billing.accounts.preferences import change_preference
from billing.accounts.sessions import Session
from billing.domain.phones import mask_phone, normalize_ro_phone
from billing.runtime import Runtime
from billing.stages.view import last_invoices
from portal import security
from portal.i18n import LANGUAGES, TEXTS, translate
from portal.limits import allow_code_request
from renderers.formats import format_amount, format_date
from storage.customers import customers_by_phone, standing
from storage.last_six import owned_document

log = logging.getLogger(__name__)

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
HOUR = 3600
ADDRESS_FIELDS = ("paper_street", "paper_city", "paper_county", "paper_postal_code")

router = APIRouter(include_in_schema=False)

# Where the language switch returns to from each page (a GET that shows the same thing).
NEXT_PATH = {"code.html": "/code", "account.html": "/account", "sms_code.html": "/sms-code"}


@dataclass
class Visit:
    """One request's view of the page: who (session), in which language, with which tokens."""

    request: Request
    runtime: Runtime
    now: datetime
    language: str
    seed: str
    new_seed: bool
    session: Session | None = None
    cookies: list[tuple[str, str | None, int | None]] = field(default_factory=list)

    def t(self, key: str, **values: object) -> str:
        return translate(self.language, key, **values)

    @property
    def csrf(self) -> str:
        return security.csrf_token(self.runtime.portal_keys, self.seed, self._bound_to)

    @property
    def _bound_to(self) -> str:
        return self.session.id if self.session else ""

    def form_ok(self, form) -> bool:
        return security.same_site_post(self.request) and security.valid_csrf(
            self.runtime.portal_keys, self.request, str(form.get("csrf", "")), self._bound_to
        )

    def render(self, template: str, status: int = 200, **context) -> HTMLResponse:
        supplier = self.runtime.supplier
        page = {
            "v": self, "t": self.t, "lang": self.language, "languages": LANGUAGES,
            "supplier_name": supplier.name, "supplier_phone": supplier.phone,
            "next_path": NEXT_PATH.get(template, "/"),
        }  # fmt: skip
        response = TEMPLATES.TemplateResponse(
            self.request, template, {**page, **context}, status_code=status
        )
        return self.finish(response)

    def redirect(self, path: str) -> RedirectResponse:
        return self.finish(RedirectResponse(path, status_code=303))

    def finish(self, response: Response) -> Response:
        if self.new_seed:
            security.set_cookie(response, self.request, security.CSRF_COOKIE, self.seed)
        for name, value, max_age in self.cookies:
            if value is None:
                security.delete_cookie(response, self.request, name)
            else:
                security.set_cookie(response, self.request, name, value, max_age)
        return response


async def visit(request: Request, signed_in: bool = True) -> Visit:
    runtime: Runtime = request.app.state.runtime
    now = request.app.state.clock()
    language = request.query_params.get("lang") or request.cookies.get(security.LANGUAGE_COOKIE)
    seed, new_seed = security.csrf_seed(request)
    v = Visit(request, runtime, now, language if language in LANGUAGES else "ro", seed, new_seed)
    if signed_in:
        cookie = request.cookies.get(security.SESSION_COOKIE)
        if cookie:
            v.session = await run_in_threadpool(runtime.sessions.find, cookie, now)
    return v


def refused(v: Visit) -> HTMLResponse:
    return v.render("message.html", status=403, message=v.t("forbidden"), home=True)


# --- the phone form and the code -------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def home(request: Request):
    v = await visit(request)
    if v.session is not None:
        return v.redirect("/account")
    return v.render("home.html")


@router.post("/", response_class=HTMLResponse)
async def send_code(request: Request):
    started = time.monotonic()
    v = await visit(request, signed_in=False)
    form = await request.form()
    if not v.form_ok(form):
        return refused(v)
    typed = str(form.get("phone", ""))[:40]
    phone = normalize_ro_phone(typed)
    if phone is None:
        return v.render("home.html", status=422, error=v.t("phone_invalid"), phone=typed)
    settings, keys, limiter = v.runtime.settings, v.runtime.portal_keys, v.runtime.limiter
    client = (
        keys.digest("rate", "code-client", _client(request)),
        Limit("code-client", settings.codes_per_client, HOUR),
    )
    allowed = await run_in_threadpool(_within_limits, limiter, v.now, client)
    # The number's budget, the one texting COD draws on too (portal.limits), counts only once
    # the client is within its own (see _within_limits).
    if allowed:
        allowed = await run_in_threadpool(allow_code_request, v.runtime, phone, v.now)
    if not allowed:
        log.info("code request refused: rate limit")
        await _answer_at(started, request.app.state.answer_seconds)
        return v.render("message.html", status=429, message=v.t("too_many"), home=True)
    code_request = await run_in_threadpool(v.runtime.codes.request, phone, "web", v.now)
    if code_request.message is not None:
        _deliver(request.app, v.runtime, code_request.message)
    # The answer leaves at the same moment after the request whether or not a code was sent
    # (ASVS 6.3.8): the SMS goes out meanwhile, and keeps going if it takes longer.
    await _answer_at(started, request.app.state.answer_seconds, request.app.state.deliveries)
    log.info("code requested on the page")
    v.cookies.append((security.CHALLENGE_COOKIE, code_request.token, settings.otp_ttl_seconds))
    return v.render("code.html", phone=mask_phone(phone), minutes=_minutes(settings))


@router.get("/code", response_class=HTMLResponse)
async def code_form(request: Request):
    v = await visit(request, signed_in=False)
    token = request.cookies.get(security.CHALLENGE_COOKIE, "")
    phone = await run_in_threadpool(v.runtime.codes.pending_phone, token, v.now) if token else None
    if phone is None:
        return v.redirect("/")
    return v.render("code.html", phone=mask_phone(phone), minutes=_minutes(v.runtime.settings))


@router.post("/code", response_class=HTMLResponse)
async def check_code(request: Request):
    v = await visit(request, signed_in=False)
    form = await request.form()
    if not v.form_ok(form):
        return refused(v)
    token = request.cookies.get(security.CHALLENGE_COOKIE, "")
    if not token:
        return v.render("message.html", status=400, message=v.t("code_missing"), home=True)
    if not await _checks_allowed(v, request):
        return v.render("message.html", status=429, message=v.t("too_many"), home=True)
    phone = await run_in_threadpool(v.runtime.codes.pending_phone, token, v.now)
    verdict = await run_in_threadpool(
        v.runtime.codes.verify, token, str(form.get("code", ""))[:20], v.now
    )
    if verdict.check == Check.OK:
        return await _sign_in(v, verdict)
    log.info("code refused: %s", verdict.check)
    if verdict.check == Check.WRONG:
        return v.render(
            "code.html", status=400, error=v.t("code_wrong", tries=verdict.tries_left),
            phone=mask_phone(phone or ""), minutes=_minutes(v.runtime.settings),
        )  # fmt: skip
    v.cookies.append((security.CHALLENGE_COOKIE, None, None))
    message = {
        Check.LOCKED: "code_locked", Check.EXPIRED: "code_expired", Check.SPENT: "code_expired",
    }.get(verdict.check, "code_missing")  # fmt: skip
    return v.render("message.html", status=400, message=v.t(message), home=True, again=True)


@router.get("/sms-code", response_class=HTMLResponse)
async def sms_code_form(request: Request):
    v = await visit(request, signed_in=False)
    return v.render("sms_code.html")


@router.post("/sms-code", response_class=HTMLResponse)
async def check_sms_code(request: Request):
    v = await visit(request, signed_in=False)
    form = await request.form()
    if not v.form_ok(form):
        return refused(v)
    typed = str(form.get("phone", ""))[:40]
    phone = normalize_ro_phone(typed)
    if phone is None:
        return v.render("sms_code.html", status=422, error=v.t("phone_invalid"), phone=typed)
    if not await _checks_allowed(v, request, phone):
        return v.render("message.html", status=429, message=v.t("too_many"), home=True)
    verdict = await run_in_threadpool(
        v.runtime.codes.verify_by_phone, phone, str(form.get("code", ""))[:20], v.now
    )
    if verdict.check == Check.OK:
        return await _sign_in(v, verdict)
    log.info("code by SMS refused: %s", verdict.check)
    error = (
        v.t("code_wrong", tries=verdict.tries_left)
        if verdict.check == Check.WRONG
        else v.t("code_expired")
    )
    return v.render("sms_code.html", status=400, error=error, phone=typed)


async def _sign_in(v: Visit, verdict: Verdict) -> Response:
    """A new session (a new id at every login), the challenge cookie gone. A session the
    browser still held ends here: its cookie is being replaced, so no one should still hold it."""
    sessions = v.runtime.sessions
    await run_in_threadpool(sessions.close, v.request.cookies.get(security.SESSION_COOKIE), v.now)
    cookie = await run_in_threadpool(sessions.open, verdict.phone, v.now)
    v.cookies.append((security.SESSION_COOKIE, cookie, None))
    v.cookies.append((security.CHALLENGE_COOKIE, None, None))
    log.info("signed in")
    return v.redirect("/account")


async def _checks_allowed(v: Visit, request: Request, phone: str = "") -> bool:
    keys, settings = v.runtime.portal_keys, v.runtime.settings
    buckets = [
        (
            keys.digest("rate", "check-client", _client(request)),
            Limit("check-client", settings.code_checks_per_client, HOUR),
        )
    ]
    if phone:
        buckets.append(
            (
                keys.digest("rate", "check-phone", phone),
                Limit("check-phone", settings.code_checks_per_client, HOUR),
            )
        )
    allowed = await run_in_threadpool(_within_limits, v.runtime.limiter, v.now, *buckets)
    if not allowed:
        log.info("code check refused: rate limit")
    return allowed


def _within_limits(limiter, now, *buckets) -> bool:
    """Count a hit in each bucket in turn (the client's first), up to the first that refuses:
    a refused request still counts for its client, but a client already refused does not use
    up the numbers it asks for, or it could keep any customer from a code. True when all allow."""
    return all(limiter.hit(bucket, limit, now) for bucket, limit in buckets)


def _client(request: Request) -> str:
    """The client's address as uvicorn gives it (behind the operator's proxy, --proxy-headers
    with --forwarded-allow-ips makes this the customer's address, not the proxy's). An IPv6
    client counts as its /64: one home gets a whole /64 and could take a new address each time."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _deliver(app, runtime: Runtime, message) -> None:
    """Send the code's SMS in a worker thread; the task is kept until done."""

    async def send() -> None:
        try:
            results = await asyncio.to_thread(runtime.sms.send, [message])
            if not results or not results[0].sent:
                log.warning("code SMS not sent: %s", results[0].status if results else "no result")
        except Exception as exc:  # never let a provider error reach the customer's answer
            log.warning("code SMS not sent: %s", type(exc).__name__)

    task = asyncio.get_running_loop().create_task(send())
    app.state.deliveries.add(task)
    task.add_done_callback(app.state.deliveries.discard)


async def _answer_at(started: float, seconds: float, deliveries: set | None = None) -> None:
    """Wait until `seconds` after `started`; pending deliveries may finish meanwhile."""
    remaining = seconds - (time.monotonic() - started)
    if remaining > 0 and deliveries:
        await asyncio.wait(list(deliveries), timeout=remaining)
        remaining = seconds - (time.monotonic() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)


def _minutes(settings) -> int:
    return max(1, settings.otp_ttl_seconds // 60)


# --- the account ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    customer_id: str
    name: str
    invoices: list[dict]
    preference: object
    pending_change: bool
    has_email: bool


def _accounts(runtime: Runtime, phone: str) -> list[Account]:
    with runtime.ledger.connect() as conn:
        owners = customers_by_phone(conn, phone)
        standings = {cid: standing(conn, cid) for cid in owners}
    accounts = []
    for cid in owners:
        found = standings[cid]
        if found is None:
            continue
        invoices = [
            _shown(i) for i in last_invoices(runtime.ledger, runtime.archive, cid, periods=True)
        ]
        accounts.append(
            Account(
                cid, found.customer.name, invoices, found.preference, found.pending_change,
                bool(found.customer.email) and "invalid_email" not in found.customer.contact_flags,
            )
        )  # fmt: skip
    return accounts


def _shown(invoice: dict) -> dict:
    """An invoice of the `invoices view` list as the page prints it (no archive link)."""
    return {
        "number": invoice["number"],
        "issue_date": format_date(date.fromisoformat(invoice["issue_date"])),
        "due_date": format_date(date.fromisoformat(invoice["due_date"])),
        "period": f"{format_date(date.fromisoformat(invoice['period_start']))} – "
        f"{format_date(date.fromisoformat(invoice['period_end']))}",
        "total": format_amount(Decimal(invoice["total"])),
        "currency": "lei" if invoice["currency"] == "RON" else invoice["currency"],
        "href": f"/account/invoices/{invoice['number']}.pdf",
    }


@router.get("/account", response_class=HTMLResponse)
async def account(request: Request):
    v = await visit(request)
    if v.session is None:
        return v.redirect("/")
    accounts = await run_in_threadpool(_accounts, v.runtime, v.session.phone)
    notice = {"saved": "prefs_saved", "unchanged": "prefs_unchanged"}.get(
        request.query_params.get("done", "")
    )
    return _no_store(v.render("account.html", accounts=accounts, notice=notice and v.t(notice)))


@router.get("/account/invoices/{number}.pdf")
async def download(request: Request, number: str):
    v = await visit(request)
    if v.session is None:
        return v.redirect("/")
    document = await run_in_threadpool(_own_pdf, v.runtime, v.session.phone, number[:24])
    if document is None:
        return v.render("message.html", status=404, message=v.t("not_found"), home=True)
    disposition = "inline" if request.query_params.get("view") == "1" else "attachment"
    response = Response(
        document,
        media_type="application/pdf",
        headers={"Content-Disposition": f'{disposition}; filename="{number[:24]}.pdf"'},
    )
    return _no_store(v.finish(response))


def _own_pdf(runtime: Runtime, phone: str, number: str) -> bytes | None:
    with runtime.ledger.connect() as conn:
        owners = customers_by_phone(conn, phone)
    found = owned_document(runtime.ledger, number, owners)
    if found is None:
        return None
    pdf = runtime.archive.get(found["key"], found["version_id"])
    if hashlib.sha256(pdf).hexdigest() != found["sha256"]:  # never hand out what is not archived
        log.error("invoice %s: the archived PDF does not match the ledger's sha256", number)
        return None
    return pdf


@router.post("/account/preferences", response_class=HTMLResponse)
async def preferences(request: Request):
    v = await visit(request)
    if v.session is None:
        return v.redirect("/")
    form = await request.form()
    if not v.form_ok(form):
        return refused(v)
    customer_id = str(form.get("customer_id", ""))
    accounts = await run_in_threadpool(_accounts, v.runtime, v.session.phone)
    if customer_id not in {a.customer_id for a in accounts}:
        return v.render("message.html", status=404, message=v.t("not_found"), home=True)
    delivery = str(form.get("delivery", ""))[:16]
    address = (
        {f: str(form.get(f, ""))[:200] for f in ADDRESS_FIELDS} if delivery == "paper" else None
    )
    outcome = await run_in_threadpool(
        lambda: change_preference(
            v.runtime.ledger, customer_id, "web", v.now, delivery=delivery,
            notify=str(form.get("notify", ""))[:8], address=address,
        )
    )  # fmt: skip
    if not outcome.ok:
        errors = {
            customer_id: [
                (r.field, v.t(r.field) if r.field in TEXTS else r.field,
                 v.t(f"reason_{r.reason}") if f"reason_{r.reason}" in TEXTS else v.t("reason_other"))
                for r in outcome.refusals
            ]
        }  # fmt: skip
        typed = {
            customer_id: {f: str(form.get(f, "")) for f in ("delivery", "notify", *ADDRESS_FIELDS)}
        }
        return _no_store(
            v.render("account.html", status=422, accounts=accounts, errors=errors, typed=typed)
        )
    log.info("preference %s on the page", "changed" if outcome.changed else "unchanged")
    return v.redirect(f"/account?done={'saved' if outcome.changed else 'unchanged'}#prefs")


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request):
    v = await visit(request)
    form = await request.form()
    if v.session is not None and not v.form_ok(form):
        return refused(v)
    await run_in_threadpool(
        v.runtime.sessions.close, request.cookies.get(security.SESSION_COOKIE), v.now
    )
    v.session = None
    v.cookies.append((security.SESSION_COOKIE, None, None))
    return v.render("message.html", message=v.t("logged_out"), home=True)


@router.post("/language")
async def language(request: Request):
    v = await visit(request)
    form = await request.form()
    # The switch is on every page, signed in or not: /code and /sms-code carry a token that is
    # not bound to a session even when the browser holds one.
    if not (v.form_ok(form) or _anonymous_form_ok(v, form)):
        return refused(v)
    chosen = str(form.get("lang", ""))
    back = str(form.get("next", "/"))
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/"
    if chosen in LANGUAGES:
        v.cookies.append((security.LANGUAGE_COOKIE, chosen, 365 * 24 * HOUR))
    return v.redirect(back)


def _anonymous_form_ok(v: Visit, form) -> bool:
    return security.same_site_post(v.request) and security.valid_csrf(
        v.runtime.portal_keys, v.request, str(form.get("csrf", ""))
    )


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
