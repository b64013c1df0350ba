"""Page sessions: a signed cookie naming a session kept on the server, which ends after 15 idle
minutes, 2 hours after login, or at logout, whatever the browser still holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from billing.accounts.keys import Keys, token_id
from billing.accounts.sessions import Sessions
from storage.ledger import portal_sessions
from tests.support.enrolled import KEYS_SECRET, new_phone

T0 = datetime(2026, 11, 5, 8, 30, tzinfo=UTC)
IDLE, ABSOLUTE = timedelta(seconds=900), timedelta(seconds=7200)


@pytest.fixture
def sessions(shared_ledger) -> Sessions:
    return Sessions(shared_ledger, Keys(KEYS_SECRET), idle_seconds=900, absolute_seconds=7200)


def test_a_session_names_the_proved_number_and_the_ledger_only_its_hash(shared_ledger, sessions):
    phone = new_phone()
    cookie = sessions.open(phone, T0)

    found = sessions.find(cookie, T0 + timedelta(seconds=1))

    assert (found.phone, found.created_at) == (phone, T0)
    token = cookie.split(".")[0]
    assert found.id == token_id(token)
    with shared_ledger.connect() as conn:
        ids = set(conn.execute(sa.select(portal_sessions.c.id)).scalars())
    assert found.id in ids and token not in ids


def test_every_login_makes_a_new_token(sessions):
    phone = new_phone()
    first, second = sessions.open(phone, T0), sessions.open(phone, T0)

    assert first != second
    assert sessions.find(first, T0).id != sessions.find(second, T0).id


def _tampered(cookie: str) -> list[str]:
    token, stamp, signature = cookie.split(".")
    # the first character: all its bits are the signature's (the last one's end in padding)
    flip = "B" if signature[0] == "A" else "A"
    return [
        f"{token}.{stamp}.{flip}{signature[1:]}",  # signature changed
        f"{token[:-1]}{'x' if token[-1] != 'x' else 'y'}.{stamp}.{signature}",  # token changed
        f"{token}.{stamp[:-1]}{'A' if stamp[-1] != 'A' else 'B'}.{signature}",  # time changed
        f"{token}.{signature}",  # timestamp dropped
        token,  # the bare token, unsigned
        cookie + "." + "a" * 200,  # too long
        "",
        None,
    ]


def test_a_tampered_cookie_finds_no_session(sessions):
    cookie = sessions.open(new_phone(), T0)
    forged = Sessions(sessions.engine, Keys(b"another secret of thirty-two bytes")).open(
        new_phone(), T0
    )

    for bad in [*_tampered(cookie), forged]:
        assert sessions.find(bad, T0) is None, bad
    assert sessions.find(cookie, T0) is not None


def test_a_session_idle_for_its_timeout_ends(sessions):
    cookie = sessions.open(new_phone(), T0)
    second = timedelta(seconds=1)

    # each request starts the idle time again
    first = T0 + IDLE - second
    assert sessions.find(cookie, first) is not None
    last = first + IDLE - second
    assert sessions.find(cookie, last) is not None
    assert sessions.find(cookie, last + IDLE) is None
    assert sessions.find(cookie, last + IDLE + timedelta(hours=1)) is None


def test_an_idle_timeout_counts_from_the_last_request_to_the_minute(sessions):
    cookie = sessions.open(new_phone(), T0)

    assert sessions.find(cookie, T0 + timedelta(seconds=30)) is not None  # not written down
    assert sessions.find(cookie, T0 + IDLE) is None


def test_a_busy_session_still_ends_two_hours_after_login(sessions):
    cookie = sessions.open(new_phone(), T0)

    moment = T0
    while moment + timedelta(minutes=10) < T0 + ABSOLUTE:
        moment += timedelta(minutes=10)
        assert sessions.find(cookie, moment) is not None, moment
    assert sessions.find(cookie, T0 + ABSOLUTE - timedelta(seconds=1)) is not None
    assert sessions.find(cookie, T0 + ABSOLUTE) is None


def test_logout_revokes_the_session_on_the_server(shared_ledger, sessions):
    cookie = sessions.open(new_phone(), T0)
    copy = str(cookie)

    sessions.close(cookie, T0 + timedelta(seconds=5))

    assert sessions.find(copy, T0 + timedelta(seconds=6)) is None
    sessions.close(copy, T0 + timedelta(seconds=7))  # a second logout changes nothing
    sessions.close(None, T0)
    sessions.close("not-a-cookie", T0)
    with shared_ledger.connect() as conn:
        revoked = conn.execute(
            sa.select(portal_sessions.c.revoked_at).where(
                portal_sessions.c.id == token_id(cookie.split(".")[0])
            )
        ).scalar_one()
    assert revoked.replace(tzinfo=revoked.tzinfo or UTC) == T0 + timedelta(seconds=5)
