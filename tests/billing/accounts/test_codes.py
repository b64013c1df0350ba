"""One-time SMS codes as a customer meets them: six digits by SMS to a known mobile number only,
valid once and for `ttl` seconds, void after five wrong tries or a newer code; the ledger holds
only a keyed hash of the code."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from billing.accounts import codes as codes_module
from billing.accounts.codes import Check, Codes
from billing.accounts.keys import Keys, token_id
from storage.ledger import metadata, otp_challenges
from tests.support.enrolled import KEYS_SECRET, SUPPLIER_NAME, enrol, new_phone

T0 = datetime(2026, 11, 5, 8, 30, tzinfo=UTC)
TTL = 900


@pytest.fixture
def codes(shared_ledger) -> Codes:
    return Codes(shared_ledger, Keys(KEYS_SECRET), SUPPLIER_NAME, ttl_seconds=TTL)


@pytest.fixture
def phone(shared_ledger) -> str:
    """The mobile number of a customer the ledger knows."""
    return enrol(shared_ledger).phone


def code_of(request) -> str:
    [code] = re.findall(r"\b\d{6}\b", request.message.text)
    return code


def challenge(engine, token: str):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(otp_challenges).where(otp_challenges.c.id == token_id(token))
        ).one()


@pytest.mark.parametrize(
    ("language", "wording"),
    [
        pytest.param(
            "ro",
            "Telecom Exemplu Stefanesti SA: codul tau de acces este {code}. Valabil 15 minute. "
            "Nu il da nimanui.",
            id="ro",
        ),
        pytest.param(
            "en",
            "Telecom Exemplu Stefanesti SA: your access code is {code}. Valid for 15 minutes. "
            "Never share it.",
            id="en",
        ),
    ],
)
def test_a_known_mobile_number_gets_six_digits_by_sms(shared_ledger, codes, language, wording):
    customer = enrol(shared_ledger, language=language)

    request = codes.request(customer.phone, "web", T0)

    assert request.message.recipient == customer.phone
    code = code_of(request)
    assert request.message.text == wording.format(code=code)
    assert codes.verify(request.token, code, T0).check is Check.OK


def test_codes_are_drawn_anew_each_time(codes, phone):
    drawn = {code_of(codes.request(phone, "web", T0)) for _ in range(20)}
    assert len(drawn) > 15  # six random digits: twenty draws almost never repeat


def _ledger_text(engine) -> bytes:
    """Everything the ledger holds, as bytes to search: the SQLite files themselves, or every
    value of every PostgreSQL table."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        files = [path, path.with_name(path.name + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    with engine.connect() as conn:
        rows = [
            " ".join(str(value) for value in row)
            for table in metadata.sorted_tables
            for row in conn.execute(sa.select(table))
        ]
    return "\n".join(rows).encode()


def test_the_ledger_keeps_only_a_keyed_hash_of_the_code(shared_ledger, codes, phone, monkeypatch):
    before = _ledger_text(shared_ledger)
    # a code that appears nowhere in the ledger yet, so finding it later would mean it was kept
    code = next(c for c in ("583920", "719264", "946031", "270485") if c.encode() not in before)
    monkeypatch.setattr(codes_module.secrets, "randbelow", lambda _: int(code))

    request = codes.request(phone, "web", T0)

    assert code_of(request) == code
    assert code.encode() not in _ledger_text(shared_ledger)
    row = challenge(shared_ledger, request.token)
    assert request.token not in row.id  # only the token's sha256
    assert row.code_hash == Keys(KEYS_SECRET).digest("otp-code", row.id, code)
    other_key = Keys(b"another secret of thirty-two bytes")
    assert row.code_hash != other_key.digest("otp-code", row.id, code)


def test_a_code_works_once(codes, phone):
    request = codes.request(phone, "web", T0)
    code = code_of(request)

    first = codes.verify(request.token, f" {code[:3]} {code[3:]} ", T0)  # as typed, with spaces
    again = codes.verify(request.token, code, T0 + timedelta(seconds=1))

    assert (first.check, first.phone) == (Check.OK, phone)
    assert again.check is Check.SPENT and again.phone == ""


@pytest.mark.parametrize(
    ("after", "check"),
    [
        pytest.param(
            timedelta(seconds=TTL) - timedelta(microseconds=1), Check.OK, id="just-before"
        ),
        pytest.param(timedelta(seconds=TTL), Check.EXPIRED, id="at-ttl"),
        pytest.param(timedelta(days=1), Check.EXPIRED, id="long-after"),
    ],
)
def test_a_code_expires_at_exactly_its_ttl(codes, phone, after, check):
    request = codes.request(phone, "web", T0)

    assert codes.verify(request.token, code_of(request), T0 + after).check is check


def test_the_fifth_wrong_try_locks_the_code_even_for_the_right_one(shared_ledger, codes, phone):
    request = codes.request(phone, "web", T0)
    code = code_of(request)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    verdicts = [codes.verify(request.token, wrong, T0) for _ in range(5)]

    assert [(v.check, v.tries_left) for v in verdicts] == [
        (Check.WRONG, 4), (Check.WRONG, 3), (Check.WRONG, 2), (Check.WRONG, 1), (Check.LOCKED, 0),
    ]  # fmt: skip
    assert codes.verify(request.token, code, T0).check is Check.SPENT
    assert challenge(shared_ledger, request.token).failed_attempts == 5


def test_a_new_request_voids_the_older_code(codes, phone):
    old = codes.request(phone, "web", T0)
    new = codes.request(phone, "web", T0 + timedelta(seconds=30))

    assert codes.verify(old.token, code_of(old), T0 + timedelta(seconds=31)).check is Check.SPENT
    assert codes.verify(new.token, code_of(new), T0 + timedelta(seconds=32)).check is Check.OK


@pytest.mark.parametrize(
    "number",
    [
        pytest.param("unknown", id="no-customer"),
        pytest.param("fixed-line", id="a-customers-fixed-line"),
    ],
)
def test_a_number_no_sms_can_reach_gets_a_challenge_but_no_message(shared_ledger, codes, number):
    phone = new_phone() if number == "unknown" else enrol(shared_ledger, phone="+40212000001").phone

    request = codes.request(phone, "web", T0)

    assert request.message is None
    assert len(request.token) >= 40  # the browser gets a token all the same
    row = challenge(shared_ledger, request.token)
    assert row.phone == phone and row.failed_attempts == 0
    # any code is merely wrong: nothing tells the number apart from a customer's
    assert codes.verify(request.token, "123456", T0).check is Check.WRONG


def test_an_unknown_token_is_unknown(codes):
    assert codes.verify("no-such-token", "123456", T0).check is Check.UNKNOWN


def test_a_code_asked_by_sms_is_checked_with_the_number(codes, phone):
    asked = codes.request(phone, "sms", T0)
    code = code_of(asked)

    assert codes.verify_by_phone(phone, "000000" if code != "000000" else "111111", T0).check is (
        Check.WRONG
    )
    verdict = codes.verify_by_phone(phone, code, T0 + timedelta(seconds=5))
    assert (verdict.check, verdict.phone) == (Check.OK, phone)
    assert codes.verify_by_phone(phone, code, T0 + timedelta(seconds=6)).check is Check.SPENT


def test_a_code_asked_on_the_page_cannot_be_checked_by_number(codes, phone):
    web = codes.request(phone, "web", T0)
    assert codes.verify_by_phone(phone, code_of(web), T0).check is Check.UNKNOWN

    by_sms = codes.request(phone, "sms", T0 + timedelta(seconds=1))
    codes.request(phone, "web", T0 + timedelta(seconds=2))  # voids the SMS one
    assert codes.verify_by_phone(phone, code_of(by_sms), T0 + timedelta(seconds=3)).check is (
        Check.SPENT
    )


def test_an_unknown_origin_is_refused(codes, phone):
    with pytest.raises(ValueError, match="origin"):
        codes.request(phone, "email", T0)


def _at_once(count: int, work):
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(i):
        barrier.wait()
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_the_right_code_sent_at_once_from_many_tabs_works_once(codes, phone):
    request = codes.request(phone, "web", T0)
    code = code_of(request)

    checks = _at_once(8, lambda: codes.verify(request.token, code, T0).check)

    assert sorted(checks) == sorted([Check.OK] + [Check.SPENT] * 7)


def test_wrong_guesses_at_once_never_get_more_than_five_tries(codes, phone):
    request = codes.request(phone, "web", T0)
    wrong = f"{(int(code_of(request)) + 1) % 10**6:06d}"

    checks = _at_once(10, lambda: codes.verify(request.token, wrong, T0).check)

    assert sorted(checks) == sorted([Check.WRONG] * 4 + [Check.LOCKED] + [Check.SPENT] * 5)
