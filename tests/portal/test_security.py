"""What protects the self-service page, each tested as a customer or an attacker would notice it:
one-time codes (single use, expiry, tries, a newer code voiding older ones), rate limits across
the real server's two workers, a known number answering like an unknown one, other customers'
invoices out of reach, sessions that end, forms no other site can post, GETs that change
nothing, logs that hold no number, code, cookie or link, and the cookies' attributes."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from starlette.routing import Mount, Route

from billing.accounts.keys import token_id
from storage.ledger import metadata

CODE_REQUEST_REFUSED = 429
FORBIDDEN = "Formularul a expirat sau nu a fost trimis de pe această pagină"


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str | bool]]:
    """The cookies a response sets, by name: {"value": ..., attribute (lower case): value or True}."""
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        pair, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = pair.partition("=")
        cookie: dict[str, str | bool] = {"value": value.strip('"')}
        for attribute in attributes:
            key, sep, val = attribute.partition("=")
            cookie[key.lower()] = val.lower() if sep else True
        cookies[name] = cookie
    return cookies


def wrong(code: str, n: int) -> str:
    """The n-th wrong code (1 <= n < 10**6): never `code` itself."""
    return f"{(int(code) + n) % 10**6:06d}"


def signed_in(v) -> bool:
    return v.get("/account").status_code == 200


# --- one-time codes --------------------------------------------------------------------------


def test_a_code_signs_in_once(portal_sample, visitor):
    """The right code signs in once; the same code with its challenge cookie replayed (from the
    same browser or another) does not, nor does it count for a newer challenge."""
    phone = portal_sample.phone
    a = visitor()
    _, code = a.ask_code(phone)
    challenge = a.cookie("portal_challenge")
    first = a.enter_code(code)
    assert first.status_code == 303 and first.headers["location"] == "/account"
    assert "portal_session" in set_cookies(first)

    for replayer in (a, visitor()):
        replayer.set_cookie("portal_session", None)
        replayer.set_cookie("portal_challenge", challenge)
        again = replayer.enter_code(code)
        assert again.status_code == 400
        assert "a expirat sau a fost deja folosit" in again.text
        assert "portal_session" not in set_cookies(again)
        assert not signed_in(replayer)

    b = visitor()
    _, newer = b.ask_code(phone)
    while newer == code:  # one chance in a million: the new code may be the old one's digits
        _, newer = b.ask_code(phone)
    kept = b.enter_code(code)  # the old code against the new challenge cookie
    assert kept.status_code == 400 and "Codul nu este corect" in kept.text
    assert "portal_session" not in set_cookies(kept)
    assert not signed_in(b)


@pytest.mark.parametrize(
    "ttl", [pytest.param(None, id="default-900"), pytest.param(600, id="INVOICES_OTP_TTL_SECONDS")]
)
def test_a_code_expires_after_its_ttl(ttl, portal_sample, make_runtime, visitor, clock, outbox):
    """A code works ttl-1 seconds after it was sent, not ttl seconds after; the SMS, the page
    and the challenge cookie's lifetime all say the same ttl."""
    runtime = make_runtime(otp_ttl_seconds=ttl) if ttl else make_runtime()
    seconds = ttl or 900
    phone = portal_sample.phone

    a = visitor(runtime)
    answer, code = a.ask_code(phone)
    assert f"Codul este valabil {seconds // 60} minute" in answer.text
    assert f"Valabil {seconds // 60} minute" in outbox.code_messages(phone)[-1]["text"]
    assert set_cookies(answer)["portal_challenge"]["max-age"] == str(seconds)
    clock.advance(seconds - 1)
    assert a.enter_code(code).status_code == 303
    assert signed_in(a)

    b = visitor(runtime)
    _, code = b.ask_code(phone)
    clock.advance(seconds)
    late = b.enter_code(code)
    assert late.status_code == 400 and "Codul a expirat" in late.text
    assert "portal_session" not in set_cookies(late)
    assert not signed_in(b)


def test_five_wrong_codes_void_the_code(portal_sample, visitor):
    """Five wrong tries, the page counting down; the right code on the sixth is refused, even
    with the challenge cookie the page dropped put back."""
    a = visitor()
    _, code = a.ask_code(portal_sample.phone)
    challenge = a.cookie("portal_challenge")
    for n, left in zip(range(1, 5), (4, 3, 2, 1), strict=True):
        answer = a.enter_code(wrong(code, n))
        assert answer.status_code == 400 and f"Mai ai {left} încercări" in answer.text
    fifth = a.enter_code(wrong(code, 5))
    assert fifth.status_code == 400 and "Ai greșit codul de prea multe ori" in fifth.text

    a.set_cookie("portal_challenge", challenge)
    sixth = a.enter_code(code)
    assert sixth.status_code == 400
    assert "portal_session" not in set_cookies(sixth)
    assert not signed_in(a)


def test_a_new_code_voids_the_older_one(portal_sample, visitor):
    a = visitor()
    _, first = a.ask_code(portal_sample.phone)
    first_challenge = a.cookie("portal_challenge")
    _, second = a.ask_code(portal_sample.phone)
    second_challenge = a.cookie("portal_challenge")

    a.set_cookie("portal_challenge", first_challenge)
    old = a.enter_code(first)
    assert old.status_code == 400 and "a expirat sau a fost deja folosit" in old.text
    assert not signed_in(a)

    a.set_cookie("portal_challenge", second_challenge)
    assert a.enter_code(second).status_code == 303
    assert signed_in(a)


# --- rate limits, across the real server's two workers ---------------------------------------

PER_PHONE, PER_CLIENT = 3, 5
BURST = 12  # requests at once, each on a new connection


@pytest.fixture(scope="module")
def server(portal_sample, serve_portal, tmp_path_factory):
    """`make portal` (uvicorn, two workers, trusting X-Forwarded-* from 127.0.0.1 only) over a
    copy of the sample, with small limits and every logger at DEBUG."""
    home = portal_sample.copy_to(tmp_path_factory.mktemp("portal-server"))
    env = portal_sample.env(home, codes_per_phone=PER_PHONE, codes_per_client=PER_CLIENT)
    server = serve_portal(env, debug=True)
    yield server
    server.stop()


def ask_server(server, phone: str, forwarded_for: str = "", peer: str = "127.0.0.1") -> int:
    """Ask the server for a code for `phone` from a new connection of `peer`, through a proxy
    saying `forwarded_for` when given; the answer's status."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport = httpx.HTTPTransport(local_address=peer)
    with httpx.Client(base_url=server.url, transport=transport, timeout=30) as client:
        page = client.get("/")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        answer = client.post("/", data={"phone": phone, "csrf": token}, headers=headers)
        return answer.status_code


def burst(server, requests: list[dict]) -> tuple[list[int], set[int]]:
    """Send `requests` (ask_server's arguments) at once; their statuses and the pids of the
    workers that answered them (from the server's log)."""
    _clear_of_the_hour()
    since = server.log_size()
    with ThreadPoolExecutor(len(requests)) as pool:
        statuses = list(pool.map(lambda kw: ask_server(server, **kw), requests))
    time.sleep(0.2)  # the last access lines reach the log
    pids = {
        pid for pid, method, route, _ in server.access(since) if (method, route) == ("POST", "/")
    }
    return statuses, pids


def _clear_of_the_hour() -> None:
    """Limits count per clock hour: never let a burst straddle the turn of one."""
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 1)


def test_codes_per_phone_hold_across_two_workers(server, portal_sample):
    """Twelve requests at once for one number, each from another client address (behind the
    trusted proxy) and the number written in turn as a customer may write it: exactly three
    are answered, across both workers; the next is refused."""
    rest = portal_sample.other_phone[3:]
    forms = [f"+40{rest}", f"0{rest}", f"+40 {rest[:3]} {rest[3:6]} {rest[6:]}", f"0040{rest}"]
    requests = [
        {"phone": forms[i % len(forms)], "forwarded_for": f"203.0.113.{i}"}
        for i in range(1, BURST + 1)
    ]
    statuses, pids = burst(server, requests)
    assert sorted(statuses) == [200] * PER_PHONE + [CODE_REQUEST_REFUSED] * (BURST - PER_PHONE)
    assert len(pids) == 2, "both workers answered"
    assert ask_server(server, portal_sample.other_phone, "203.0.113.99") == CODE_REQUEST_REFUSED
    assert ask_server(server, "+40799000201", "203.0.113.99") == 200  # another number still can


def test_codes_per_client_hold_across_two_workers(server):
    """Twelve requests at once from one client address, each for another number: exactly five
    are answered; a spoofed address put before the proxy's own does not dodge the limit; another
    client still gets its codes."""
    requests = [
        {"phone": f"+407990003{i:02d}", "forwarded_for": f"198.51.100.{i}, 203.0.113.50"}
        for i in range(BURST)
    ]
    statuses, pids = burst(server, requests)
    assert sorted(statuses) == [200] * PER_CLIENT + [CODE_REQUEST_REFUSED] * (BURST - PER_CLIENT)
    assert len(pids) == 2, "both workers answered"
    assert ask_server(server, "+40799000399", "203.0.113.50") == CODE_REQUEST_REFUSED
    assert ask_server(server, "+40799000399", "203.0.113.51") == 200


def test_forwarded_for_from_an_untrusted_peer_is_ignored(server):
    """A client that is not the proxy (127.0.0.2) sends X-Forwarded-For with a new address each
    time: the limit still counts its own address, and holds at five."""
    requests = [
        {"phone": f"+407990004{i:02d}", "forwarded_for": f"192.0.2.{i}", "peer": "127.0.0.2"}
        for i in range(BURST)
    ]
    statuses, _ = burst(server, requests)
    assert sorted(statuses) == [200] * PER_CLIENT + [CODE_REQUEST_REFUSED] * (BURST - PER_CLIENT)


def post_at_once(server, path: str, cookies: dict, data: dict, n: int, forwarded_for: str):
    """`n` posts of the same form at once, each from a new connection carrying the same
    cookies (a browser's, copied); the answers and the pids of the workers that gave them."""

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as client:
            return client.post(path, data=data, headers={"X-Forwarded-For": forwarded_for})

    since = server.log_size()
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(post, range(n)))
    time.sleep(0.2)  # the last access lines reach the log
    pids = {
        pid for pid, method, route, _ in server.access(since) if (method, route) == ("POST", path)
    }
    return answers, pids


def test_a_code_entered_many_times_at_once_signs_in_once(server, portal_sample, http_visitor):
    """The right code posted eight times at once, across both workers: one session, no more."""
    v = http_visitor(server, **{"X-Forwarded-For": "203.0.113.210"})
    _, code = v.ask_code(portal_sample.spare_phones[0])
    cookies = dict(v.client.cookies)
    answers, pids = post_at_once(
        server, "/code", cookies, {"code": code, "csrf": v.token}, 8, "203.0.113.210"
    )
    assert sorted(a.status_code for a in answers) == [303] + [400] * 7
    assert sum("portal_session" in set_cookies(a) for a in answers) == 1
    assert len(pids) == 2, "both workers answered"


def test_guesses_at_once_get_five_tries_in_all(server, portal_sample, http_visitor):
    """Twelve wrong codes posted at once, across both workers: four are told how many tries are
    left, one that the code is now void, the rest that it is spent; the right one then fails."""
    v = http_visitor(server, **{"X-Forwarded-For": "203.0.113.211"})
    _, code = v.ask_code(portal_sample.spare_phones[1])
    cookies = dict(v.client.cookies)
    answers, pids = post_at_once(
        server, "/code", cookies, {"code": wrong(code, 1), "csrf": v.token}, 12, "203.0.113.211"
    )
    assert {a.status_code for a in answers} == {400}
    left = sorted(int(m.group(1)) for a in answers if (m := re.search(r"Mai ai (\d)", a.text)))
    assert left == [1, 2, 3, 4]
    assert sum("de prea multe ori" in a.text for a in answers) == 1
    assert sum("a expirat sau a fost deja folosit" in a.text for a in answers) == 7
    assert len(pids) == 2, "both workers answered"
    right, _ = post_at_once(
        server, "/code", cookies, {"code": code, "csrf": v.token}, 1, "203.0.113.211"
    )
    assert right[0].status_code == 400 and "portal_session" not in set_cookies(right[0])


def test_one_ipv6_network_is_one_client(server):
    """A client on IPv6 holds a whole /64 (what an ISP hands a home): new addresses from it,
    each asking for another number, share one client's limit."""
    requests = [
        {"phone": f"+407990005{i:02d}", "forwarded_for": f"2001:db8:5:6::{i + 1:x}"}
        for i in range(BURST)
    ]
    statuses, _ = burst(server, requests)
    assert sorted(statuses) == [200] * PER_CLIENT + [CODE_REQUEST_REFUSED] * (BURST - PER_CLIENT)
    assert ask_server(server, "+40799000599", "2001:db8:5:7::1") == 200  # another network


def test_a_client_over_its_limit_does_not_use_up_other_numbers(
    portal_sample, make_runtime, visitor
):
    """A client refused for asking too often does not count against the numbers it goes on
    asking for: it cannot keep customers from their codes by asking for their numbers."""
    runtime = make_runtime(codes_per_client=PER_CLIENT, codes_per_phone=PER_PHONE)
    attacker = visitor(runtime, address="198.51.100.7")
    for i in range(PER_CLIENT):  # numbers no customer has: the page answers as for any
        assert attacker.request_code(f"+407990006{i:02d}").status_code == 200
    for _ in range(PER_PHONE):
        assert attacker.ask_code(portal_sample.phone)[0].status_code == CODE_REQUEST_REFUSED
    customer = visitor(runtime, address="203.0.113.8")
    answer, code = customer.ask_code(portal_sample.phone)
    assert answer.status_code == 200 and code


@pytest.mark.parametrize(
    "peer, secure", [("127.0.0.1", True), ("127.0.0.2", False)], ids=["trusted-proxy", "untrusted"]
)
def test_cookies_are_secure_behind_the_proxy_on_https(server, peer, secure):
    """X-Forwarded-Proto: https from the trusted proxy makes every cookie Secure (and the page
    asks for HTTPS from then on); from any other peer, the header changes nothing."""
    transport = httpx.HTTPTransport(local_address=peer)
    with httpx.Client(base_url=server.url, transport=transport) as client:
        answer = client.get("/", headers={"X-Forwarded-Proto": "https"})
    cookie = set_cookies(answer)["portal_csrf"]
    assert cookie.get("secure", False) is secure
    assert ("strict-transport-security" in answer.headers) is secure
    assert cookie["httponly"] is True and cookie["samesite"] == "strict" and cookie["path"] == "/"


# --- a known number answers like an unknown one ----------------------------------------------


def test_an_unknown_number_answers_like_a_known_one(portal_sample, make_runtime, visitor):
    """Same status, same page but for the three digits it shows, the same cookies with the same
    attributes, and no time difference to measure (both wait the answer time)."""
    runtime = make_runtime(codes_per_phone=100, codes_per_client=100)
    answer_seconds = 0.2
    seed = "S" * 32  # both visitors hold the same form-token cookie: the same token in the page
    known, unknown = visitor(runtime, answer_seconds), visitor(runtime, answer_seconds)
    for v in (known, unknown):
        v.set_cookie("portal_csrf", seed)
        v.get("/")
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    answers: dict[str, list[httpx.Response]] = {"known": [], "unknown": []}
    for _ in range(10):
        for kind, v, phone in (
            ("known", known, portal_sample.phone),
            ("unknown", unknown, portal_sample.unknown_phone),
        ):
            started = time.perf_counter()
            answers[kind].append(v.post("/", {"phone": phone}))
            timings[kind].append(time.perf_counter() - started)

    def masked(response: httpx.Response) -> str:
        return re.sub(r"(07•• ••• )\d{3}", r"\1###", response.text)

    for k, u in zip(answers["known"], answers["unknown"], strict=True):
        assert k.status_code == u.status_code == 200
        assert masked(k) == masked(u)
        known_cookies, unknown_cookies = set_cookies(k), set_cookies(u)
        assert known_cookies.keys() == unknown_cookies.keys() == {"portal_challenge"}
        for name in known_cookies:
            kc, uc = dict(known_cookies[name]), dict(unknown_cookies[name])
            assert len(kc.pop("value")) == len(uc.pop("value"))
            assert kc == uc
    assert min(timings["known"]) >= answer_seconds
    assert min(timings["unknown"]) >= answer_seconds
    difference = statistics.median(timings["known"]) - statistics.median(timings["unknown"])
    assert abs(difference) < 0.05, timings


# --- other customers' invoices ---------------------------------------------------------------


def _documents(runtime, customer_id: str) -> list[dict]:
    from storage.last_six import newest_archived_invoices

    return newest_archived_invoices(runtime.ledger, customer_id)


CRAFTED = {
    "other's number": "/account/invoices/{number}.pdf",
    "other's number, to view": "/account/invoices/{number}.pdf?view=1",
    "lower case": "/account/invoices/{lower}.pdf",
    "archive key, encoded slashes": "/account/invoices/..%2F..%2Finvoices%2F{customer}%2F{number}.pdf",
    "archive key, encoded dots": "/account/invoices/%2E%2E%2F%2E%2E%2F{key_encoded}",
    "archive key, backslashes": "/account/invoices/..%5C..%5Cinvoices%5C{customer}%5C{number}.pdf",
    "own number, then other's": "/account/invoices/{own}.pdf%2F..%2F{number}.pdf",
    "own number, key as query": "/account/invoices/{own}.pdf?key={key}&version_id=",
    "double extension": "/account/invoices/{number}.pdf.pdf",
    "NUL after the number": "/account/invoices/{number}%00.pdf",
    "the archive key itself": "/{key}",
    "static files, up to the archive": "/static/{static_to_archive}",
    "static files, encoded": "/static/{static_to_archive_encoded}",
}


@pytest.mark.parametrize("crafted", list(CRAFTED.values()), ids=list(CRAFTED))
def test_another_customers_invoice_is_out_of_reach(crafted, portal_sample, portal_runtime, visitor):
    """Signed in as one customer, no path or query yields another customer's PDF: a number
    that is not yours is as absent as one that does not exist."""
    from portal.app import STATIC

    own = _documents(portal_runtime, portal_sample.customer_id)[0]
    theirs = _documents(portal_runtime, portal_sample.other_customer_id)[0]
    archive_file = portal_runtime.settings.archive_url.rstrip("/") + "/" + theirs["key"]
    static_to_archive = os.path.relpath(archive_file, STATIC)
    path = crafted.format(
        number=theirs["number"], lower=theirs["number"].lower(), own=own["number"],
        customer=portal_sample.other_customer_id, key=theirs["key"],
        key_encoded=quote(theirs["key"], safe=""), static_to_archive=static_to_archive,
        static_to_archive_encoded=quote(static_to_archive, safe=""),
    )  # fmt: skip
    a = visitor()
    a.sign_in(portal_sample.phone)
    answer = a.get(path)
    assert hashlib.sha256(answer.content).hexdigest() != theirs["sha256"]
    if "?key=" in path:  # the query means nothing: your own PDF
        assert answer.status_code == 200
        assert hashlib.sha256(answer.content).hexdigest() == own["sha256"]
    else:
        assert answer.status_code == 404
        assert b"%PDF" not in answer.content


def test_a_number_not_yours_reads_like_one_that_does_not_exist(
    portal_sample, portal_runtime, visitor
):
    theirs = _documents(portal_runtime, portal_sample.other_customer_id)[0]
    a = visitor()
    a.sign_in(portal_sample.phone)
    not_yours = a.get(f"/account/invoices/{theirs['number']}.pdf")
    absent = a.get("/account/invoices/OR99999999.pdf")
    assert not_yours.status_code == absent.status_code == 404
    assert not_yours.text == absent.text
    assert set_cookies(not_yours) == set_cookies(absent) == {}


def test_an_invoice_needs_a_session(portal_sample, portal_runtime, visitor):
    own = _documents(portal_runtime, portal_sample.customer_id)[0]
    a = visitor()
    for view in ("", "?view=1"):
        answer = a.get(f"/account/invoices/{own['number']}.pdf{view}")
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert b"%PDF" not in answer.content
        assert "content-disposition" not in answer.headers


# --- sessions --------------------------------------------------------------------------------


@pytest.mark.parametrize("part", [0, 1, 2], ids=["token", "timestamp", "signature"])
def test_a_tampered_session_cookie_is_refused(part, portal_sample, visitor):
    a = visitor()
    cookie = a.sign_in(portal_sample.phone)
    pieces = cookie.split(".")
    # The first character: the last one of a base64 text may carry only padding bits.
    pieces[part] = ("A" if pieces[part][0] != "A" else "B") + pieces[part][1:]
    b = visitor()
    b.set_cookie("portal_session", ".".join(pieces))
    answer = b.get("/account")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert b.get(f"/account/invoices/{_latest_number(a)}.pdf").status_code == 303


def _latest_number(v) -> str:
    return re.search(r'data-number="([^"]+)"', v.get("/account").text).group(1)


def test_a_session_ends_after_fifteen_idle_minutes(portal_sample, visitor, clock):
    """Each request keeps the session alive for another 900 s (counted from the last request
    the server noted: it notes one a minute at most); 900 s without one end it."""
    a = visitor()
    a.sign_in(portal_sample.phone)
    for _ in range(3):
        clock.advance(899)
        assert signed_in(a)
    clock.advance(900)
    assert not signed_in(a)
    assert a.get("/").status_code == 200  # the phone form again, not the account


def test_a_session_ends_two_hours_after_login_however_busy(portal_sample, visitor, clock):
    a = visitor()
    a.sign_in(portal_sample.phone)
    for _ in range(11):
        clock.advance(600)
        assert signed_in(a)
    clock.advance(599)  # 7199 s after login
    assert signed_in(a)
    clock.advance(1)
    assert not signed_in(a)


def test_logout_ends_the_session_on_the_server(portal_sample, visitor):
    """After logout, a copy of the old cookie (kept by an attacker) opens nothing."""
    a = visitor()
    cookie = a.sign_in(portal_sample.phone)
    number = _latest_number(a)
    out = a.post("/logout")
    assert out.status_code == 200 and "Ai ieșit din cont" in out.text
    assert set_cookies(out)["portal_session"]["max-age"] == "0"
    copy = visitor()
    copy.set_cookie("portal_session", cookie)
    assert not signed_in(copy)
    assert copy.get(f"/account/invoices/{number}.pdf").status_code == 303


def test_each_login_gets_a_new_session(portal_sample, visitor):
    """Every login makes a new session id, and a login on another device leaves this one's
    session alone (a customer may use the page on a phone and a laptop): each ends by its own
    logout or timeout."""
    phone = portal_sample.phone
    laptop, mobile = visitor(), visitor()
    first = laptop.sign_in(phone)
    second = mobile.sign_in(phone)
    assert first.split(".")[0] != second.split(".")[0]
    assert signed_in(laptop) and signed_in(mobile)

    mobile.post("/logout")
    assert not signed_in(mobile)
    assert signed_in(laptop)


def test_signing_in_again_ends_the_session_the_browser_held(portal_sample, visitor):
    """A login from a browser that still holds a live session (the phone form left open in
    another tab) replaces that session: the old cookie, copied before, opens nothing."""
    phone = portal_sample.phone
    laptop, mobile = visitor(), visitor()
    laptop.get("/")
    old_tab = laptop.token
    first = laptop.sign_in(phone)
    mobile.sign_in(phone)

    laptop.token = old_tab
    again = laptop.sign_in(phone)
    assert again.split(".")[0] != first.split(".")[0]
    assert signed_in(laptop)
    stale = visitor()
    stale.set_cookie("portal_session", first)
    assert not signed_in(stale)
    assert signed_in(mobile), "another device's session is not this browser's to end"


# --- forms no other site can post ------------------------------------------------------------


def _count(runtime, table: str) -> int:
    with runtime.ledger.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(metadata.tables[table])).scalar()


def _rows(runtime, table: str) -> list[tuple]:
    t = metadata.tables[table]
    with runtime.ledger.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]


class Form:
    """One of the page's forms: how to reach it, what to post, and what a refused post must
    leave unchanged."""

    def __init__(self, sample, runtime, visitor, outbox) -> None:
        self.sample, self.runtime, self.visitor, self.outbox = sample, runtime, visitor, outbox

    def prepare(self, path: str):
        """A visitor ready to post `path` (signed in for the account's forms), the form data,
        the visitor's token from before signing in, and a check that nothing happened."""
        phone = self.sample.phone
        v = self.visitor()
        v.get("/")
        before_login = v.token
        if path == "/":
            sent = len(self.outbox.code_messages(phone))
            challenges = _count(self.runtime, "otp_challenges")

            def unchanged() -> None:
                assert len(self.outbox.code_messages(phone)) == sent
                assert _count(self.runtime, "otp_challenges") == challenges

            return v, {"phone": phone}, before_login, unchanged
        if path == "/code":
            _, code = v.ask_code(phone)

            def unchanged() -> None:
                assert not signed_in(v)
                assert {r.failed_attempts for r in self._challenges()} <= {0}
                assert v.enter_code(code).status_code == 303  # the code is still whole

            return v, {"code": code}, v.token, unchanged
        if path in ("/sms-code", "/language"):
            limits = _rows(self.runtime, "rate_limits")
            data = (
                {"phone": phone, "code": "123456"}
                if path == "/sms-code"
                else {"lang": "en", "next": "/"}
            )

            def unchanged() -> None:
                assert _rows(self.runtime, "rate_limits") == limits
                assert v.cookie("portal_lang") is None
                assert "Facturile mele" in v.get("/").text  # still Romanian

            return v, data, before_login, unchanged
        v.sign_in(phone)
        changes = _rows(self.runtime, "preference_changes")
        data = (
            {"customer_id": self.sample.customer_id, "delivery": "electronic", "notify": "both"}
            if path == "/account/preferences"
            else {}
        )

        def unchanged() -> None:
            assert _rows(self.runtime, "preference_changes") == changes
            assert signed_in(v)

        return v, data, before_login, unchanged

    def _challenges(self):
        t = metadata.tables["otp_challenges"]
        with self.runtime.ledger.connect() as conn:
            return list(conn.execute(sa.select(t).where(t.c.phone == self.sample.phone)))


FORMS = ["/", "/code", "/sms-code", "/account/preferences", "/logout", "/language"]
SIGNED_IN_FORMS = ("/account/preferences", "/logout")
ATTACKS = [
    "origin of another site",
    "opaque origin",
    "fetch metadata: cross-site",
    "no form token",
    "another visitor's token",
]


@pytest.mark.parametrize(
    "path, attack",
    [(path, attack) for path in FORMS for attack in ATTACKS]
    + [(path, "own token from before login") for path in SIGNED_IN_FORMS],
)
def test_a_cross_site_post_is_refused(path, attack, portal_sample, portal_runtime, visitor, outbox):
    """Each form, posted as another site would post it (the browser says so in Origin or
    Sec-Fetch-Site), or without a token of this visitor's own: refused, and nothing changed."""
    form = Form(portal_sample, portal_runtime, visitor, outbox)
    v, data, before_login, unchanged = form.prepare(path)
    headers = {}
    if attack == "origin of another site":
        headers["Origin"] = "https://evil.example"
    elif attack == "opaque origin":
        headers["Origin"] = "null"
    elif attack == "fetch metadata: cross-site":
        headers["Sec-Fetch-Site"] = "cross-site"
    elif attack == "another visitor's token":
        other = visitor()
        if path in SIGNED_IN_FORMS:
            other.sign_in(portal_sample.other_phone)
        else:
            other.get("/")
        data = {**data, "csrf": other.token}
    elif attack == "own token from before login":  # a token is bound to the session
        data = {**data, "csrf": before_login}
    answer = v.post(path, data, token=attack != "no form token", headers=headers)
    assert answer.status_code == 403
    assert FORBIDDEN in answer.text
    unchanged()


def test_a_same_site_post_with_its_token_is_accepted(portal_sample, visitor):
    """The counterpart of the refusals: the page's own form, posted as a browser posts it."""
    a = visitor()
    a.sign_in(portal_sample.phone)
    answer = a.post(
        "/language",
        {"lang": "en", "next": "/account"},
        headers={"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/account"
    assert "Your account" in a.get("/account").text


# --- no GET changes anything ----------------------------------------------------------------


def _snapshot(runtime) -> dict[str, list[tuple]]:
    return {t.name: _rows(runtime, t.name) for t in metadata.sorted_tables}


def _get_paths(app, number: str) -> list[str]:
    """A request for every GET route of the app (the phone API's too, when it is built in)."""
    paths = []
    for route in app.routes:
        if isinstance(route, Mount):
            paths.append(f"{route.path}/portal.css")
        elif isinstance(route, Route) and "GET" in (route.methods or ()):
            path = re.sub(r"\{number\}", number, route.path)
            paths.append(re.sub(r"\{[^}]+\}", "x", path))
    return paths


def test_no_get_changes_the_ledger(portal_sample, portal_runtime, visitor, clock):
    """Every GET route, asked by a visitor signed in, one with a code pending and one with
    nothing: no row of the ledger changes, except the signed-in session's last_seen_at, which
    a GET moves to now when it is over a minute old (that is how the idle timeout counts)."""
    signed, pending, anonymous = visitor(), visitor(), visitor()
    session = token_id(signed.sign_in(portal_sample.phone).split(".")[0])
    pending.ask_code(portal_sample.other_phone)
    number = _latest_number(signed)
    paths = _get_paths(signed.client.app, number)
    assert {"/", "/code", "/sms-code", "/account", f"/account/invoices/{number}.pdf"} <= set(paths)
    queries = ["", "?lang=en", "?view=1", "?done=saved"]

    def sweep() -> None:
        for v in (signed, pending, anonymous):
            for path in paths:
                for query in queries:
                    assert v.get(path + query).status_code < 500, path + query

    clock.advance(120)
    before = _snapshot(portal_runtime)
    sweep()
    after = _snapshot(portal_runtime)
    for table in before:
        if table != "portal_sessions":
            assert after[table] == before[table], table
    columns = [c.name for c in metadata.tables["portal_sessions"].columns]
    seen = columns.index("last_seen_at")
    moved = {}
    for old, new in zip(before["portal_sessions"], after["portal_sessions"], strict=True):
        if old != new:
            assert [o for i, o in enumerate(old) if i != seen] == [
                n for i, n in enumerate(new) if i != seen
            ]
            moved[new[0]] = new[seen]
    assert list(moved) == [session]
    assert moved[session].replace(tzinfo=None) == clock().replace(tzinfo=None)

    clock.advance(30)  # within the minute: not even last_seen_at moves
    before = _snapshot(portal_runtime)
    sweep()
    assert _snapshot(portal_runtime) == before


# --- logs ------------------------------------------------------------------------------------


LINK = re.compile(r"/account/invoices/(?!\{number\}\.pdf )")


def _secrets(phone: str, codes: list[str], cookies: list[str]) -> list[str]:
    national = "0" + phone[3:]
    found = [phone, national, phone[3:], *codes]
    for cookie in cookies:
        found += [cookie, cookie.split(".")[0], token_id(cookie), token_id(cookie.split(".")[0])]
    return [s for s in found if s]


def _flow(v, sample, number_typed: str) -> tuple[list[str], list[str]]:
    """Everything a customer does on the page: the codes and cookie values it saw."""
    phone = sample.phone
    codes = []
    _, code = v.ask_code(phone, typed=number_typed)
    codes.append(code)
    v.enter_code(wrong(code, 1))
    codes.append(wrong(code, 1))
    cookies = [v.cookie("portal_challenge"), v.cookie("portal_csrf"), v.token]
    v.enter_code(code)
    cookies.append(v.cookie("portal_session"))
    number = _latest_number(v)
    v.get(f"/account/invoices/{number}.pdf")
    v.get(f"/account/invoices/{number}.pdf?view=1")
    v.get("/account/invoices/OR99999999.pdf")
    v.post(
        "/account/preferences",
        {"customer_id": sample.customer_id, "delivery": "paper", "notify": "both",
         "paper_street": "Str. Lungă 1", "paper_city": "Brașov", "paper_county": "Brașov",
         "paper_postal_code": "500001"},
    )  # fmt: skip
    v.post("/language", {"lang": "en", "next": "/account"})
    cookies.append(v.token)
    v.post("/logout")
    v.get("/account")
    v.post("/sms-code", {"phone": number_typed, "code": "000000"})
    return codes, [c for c in cookies if c]


def test_no_secret_in_the_logs(portal_sample, visitor, caplog):
    """The whole flow logged at DEBUG (every logger but the test's own HTTP client): no phone
    number in any form, no code, no cookie or form token (nor its hash), no invoice link."""
    caplog.set_level(logging.DEBUG)
    v = visitor()
    codes, cookies = _flow(v, portal_sample, "0" + portal_sample.phone[3:])
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("portal") for r in records)
    text = "\n".join(
        f"{r.name} {r.getMessage()} {caplog.handler.formatter.formatException(r.exc_info) if r.exc_info else ''}"
        for r in records
    )
    for secret in _secrets(portal_sample.phone, codes, cookies):
        assert secret not in text, secret
    assert not LINK.search(text)  # the route's template is logged, never the link


def test_no_secret_in_the_server_log(server, portal_sample, http_visitor):
    """The same flow through the real server (two workers, every logger at DEBUG, behind the
    trusted proxy): its log holds none of it either."""
    v = http_visitor(server, **{"X-Forwarded-For": "203.0.113.200"})
    typed = f"+40 {portal_sample.phone[3:6]} {portal_sample.phone[6:9]} {portal_sample.phone[9:]}"
    codes, cookies = _flow(v, portal_sample, typed)
    time.sleep(0.2)  # the last lines reach the log
    log = server.log()
    assert "portal.access" in log and "signed in" in log
    for secret in [typed, *_secrets(portal_sample.phone, codes, cookies)]:
        assert secret not in log, secret
    assert not LINK.search(log)


def test_a_database_error_logs_no_phone_number(portal_sample, portal_runtime, visitor):
    """When the ledger fails under a code request, what the server logs (uvicorn logs the
    exception's traceback at ERROR, whatever the levels) holds no phone number."""
    import traceback

    with portal_runtime.ledger.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE otp_challenges RENAME TO otp_challenges_away")
    v = visitor()
    v.get("/")
    with pytest.raises(sa.exc.SQLAlchemyError) as failed:
        v.post("/", {"phone": portal_sample.phone})
    logged = "".join(traceback.format_exception(failed.value))
    assert portal_sample.phone not in logged


# --- cookies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_cookie_is_httponly_strict_and_host_only(scheme, portal_sample, visitor, outbox):
    """Every cookie the page sets or clears: HttpOnly, SameSite=Strict, Path=/, no Domain (so
    no other host of the domain gets it), and Secure exactly when the page is on HTTPS."""
    phone = portal_sample.phone
    v = visitor(base_url=f"{scheme}://127.0.0.1:8000")
    seen: dict[str, list[dict]] = {}

    def record(response: httpx.Response) -> httpx.Response:
        for name, cookie in set_cookies(response).items():
            seen.setdefault(name, []).append(cookie)
        return response

    record(v.get("/"))
    sent = len(outbox.code_messages(phone))
    record(v.post("/", {"phone": phone}))
    code = outbox.wait_for_code(phone, sent)
    record(v.enter_code(wrong(code, 1)))
    record(v.enter_code(code))
    record(v.get("/account"))
    record(v.post("/language", {"lang": "en", "next": "/account"}))
    record(v.post("/logout"))
    assert set(seen) == {"portal_csrf", "portal_challenge", "portal_session", "portal_lang"}
    for name, cookies in seen.items():
        for cookie in cookies:
            assert cookie.get("httponly") is True, name
            assert cookie.get("samesite") == "strict", name
            assert cookie.get("path") == "/", name
            assert "domain" not in cookie, name
            assert cookie.get("secure", False) is (scheme == "https"), name
    assert any(c.get("max-age") == "0" for c in seen["portal_session"])  # logout clears it
    assert any(c.get("max-age") == "0" for c in seen["portal_challenge"])  # login clears it
