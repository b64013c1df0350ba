"""The notify step end to end through the real SMTP path: aiosmtpd on 127.0.0.1 refuses, delays,
drops, and kills the sending process half-way; every e-mail notice still arrives exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace

import pytest
import sqlalchemy as sa

from billing import pipeline
from billing.runtime import Runtime
from notifiers.email import message_id
from storage.ledger import notices, open_ledger
from tests.support.paths import REPO, SAMPLES
from tests.support.smtp import REFUSED_REPLY, RecordingHandler, smtp_notifier, smtp_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CYCLE = "2026-11"
# Small backoff and command timeout: the settings have no knob for either (nor for the pool).
FAST = {"timeout": 5.0, "max_attempts": 5, "backoff_base": 0.01, "backoff_cap": 0.05}


def email_rows(settings) -> list:
    with open_ledger(settings.ledger_url).connect() as conn:
        return conn.execute(
            sa.select(notices)
            .where(notices.c.cycle_id == CYCLE, notices.c.channel == "email")
            .order_by(notices.c.key)
        ).all()


def message_ids(settings, rows) -> dict[str, str]:
    """Message-ID -> idempotency key, for these outbox rows."""
    return {message_id(row.key, settings.mail_from): row.key for row in rows}


class MisbehavingHandler(RecordingHandler):
    """Picks its victims among the recipients as they first arrive (the test cannot know the
    sample's routing in advance): the n-th new address in `transient_at` gets 451 twice before
    it is accepted, the n-th in `refused_at` gets 550 on every RCPT. Only ASCII addresses are
    picked, so the RCPT address is the outbox's recipient verbatim."""

    def __init__(self, transient_at: set[int], refused_at: set[int], transient_times: int = 2):
        super().__init__()
        self.transient_at, self.refused_at = transient_at, refused_at
        self.transient_times = transient_times
        self.seen: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            if address.isascii() and address not in self.seen:
                self.seen.append(address)
                if len(self.seen) in self.transient_at:
                    self.transient[address] = self.transient_times
                if len(self.seen) in self.refused_at:
                    self.refused.add(address)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


class KillingHandler(RecordingHandler):
    """On the `kill_at`-th DATA, SIGKILLs the client process (`victim`, a child of this
    process) and waits until it is dead, before any reply: that message is not accepted, not
    recorded, and the connection is closed unanswered."""

    def __init__(self, kill_at: int) -> None:
        super().__init__()
        self.kill_at = kill_at
        self.victim: subprocess.Popen | None = None
        self.killed_message_id = ""
        self.killed = threading.Event()
        self._data_seen = 0

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self._data_seen += 1
            kill = self._data_seen == self.kill_at
        if not kill:
            return await super().handle_DATA(server, session, envelope)
        raw = envelope.original_content or envelope.content
        headers = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace").split("\r\n")
        self.killed_message_id = next(
            line.split(":", 1)[1].strip()
            for line in headers
            if line.lower().startswith("message-id:")
        )
        assert self.victim is not None
        os.kill(self.victim.pid, signal.SIGKILL)
        # Blocking the server's loop (for the few ms SIGKILL takes) on purpose: awaited, this
        # handler would be cancelled by aiosmtpd as soon as the dying client's socket closes.
        _wait_until_dead(self.victim.pid)
        self.killed.set()
        server.transport.close()  # the reply below is never written
        return "421 4.3.0 The client is gone"


def _wait_until_dead(pid: int) -> None:
    """Block until the child `pid` has exited, without reaping it (Popen.wait does that)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:  # already reaped by Popen.wait: dead anyway
        pass


def test_smtp_notices_arrive_once_with_retries_and_refusals(settings_for, monkeypatch):
    handler = MisbehavingHandler(transient_at={3, 40, 90}, refused_at={10, 60, 120})
    handler.drop_at_mail.add(75)  # hang up, unanswered, on the 75th MAIL (mid-batch)

    # EmailNotifier's pool, backoff and timeout are not settings: build it as Runtime.email
    # would, with a small backoff (pool_size stays 4).
    monkeypatch.setattr(
        Runtime, "email", property(lambda runtime: smtp_notifier(runtime.settings, **FAST))
    )

    with smtp_server(handler) as server:
        settings = settings_for(smtp_host=server.host, smtp_port=server.port, smtp_tls="none")
        report = pipeline.run_cycle(Runtime(settings), CYCLE, run_id="run-1")
        rows = email_rows(settings)
        arrived = handler.message_ids()
        received = list(handler.received)

        assert len(rows) > 150
        by_status = Counter(row.status for row in rows)
        assert set(by_status) == {"sent", "failed-permanent"}, by_status  # nothing pending

        # The 550s: failed for good after one attempt, the reply kept, the address not.
        refused = handler.refused
        assert len(refused) == 3 and len(handler.transient) == 3
        failed = [row for row in rows if row.status == "failed-permanent"]
        assert {row.recipient for row in failed} == refused
        for row in failed:
            assert row.attempts == 1
            assert row.last_error == REFUSED_REPLY and "550" in row.last_error
            assert row.recipient not in row.last_error
            assert handler.rcpt_attempts[row.recipient] == sum(
                r.recipient == row.recipient for r in rows
            )
            assert row.sent_at is None and row.run_id == "run-1"

        # The 451s were retried inside the notifier until accepted: one claim, one attempt.
        sent = [row for row in rows if row.status == "sent"]
        for address in handler.transient:
            copies = [row for row in rows if row.recipient == address]
            assert copies and {row.status for row in copies} == {"sent"}
            assert handler.rcpt_attempts[address] == handler.transient_times + len(copies)
        assert handler.drops == 1
        assert {row.attempts for row in sent} == {1}
        assert all(row.sent_at is not None and row.run_id == "run-1" for row in sent)

        # Exactly one message per sent key, under the Message-ID the ledger recorded.
        ids = message_ids(settings, rows)
        assert arrived == {message_id(row.key, settings.mail_from): 1 for row in sent}
        assert all(
            row.provider_message_id == message_id(row.key, settings.mail_from) for row in sent
        )
        for item in received:
            key = ids[item.message_id]
            number = key.split(":")[0]
            row = next(r for r in rows if r.key == key)
            assert item.rcpt_tos == (row.recipient,)
            [pdf] = [p for p in item.message.walk() if p.get_content_type() == "application/pdf"]
            assert pdf.get_filename() == f"{number}.pdf"
            assert pdf.get_payload(decode=True).startswith(b"%PDF")

        # The run report counts what the ledger holds.
        assert report["notices"]["email"] == {
            "sent": len(sent),
            "failed": len(failed),
            "pending": 0,
        }

        # A second run sends nothing more and changes no notice.
        again = pipeline.run_cycle(Runtime(settings), CYCLE, run_id="run-2")
        assert handler.message_ids() == arrived
        assert len(handler.received) == len(received)
        assert [(r.key, r.status, r.attempts, r.run_id) for r in email_rows(settings)] == [
            (r.key, r.status, r.attempts, r.run_id) for r in rows
        ]
        assert again["notices"]["email"] == report["notices"]["email"]


# The notify step in its own process, sending one message at a time: the e-mail notifier with
# a pool of one connection, and the e-mail channel claiming and recording one notice per batch.
# Neither is a setting (INVOICES_* has no pool or batch size), so the bootstrap patches the two
# factories (Runtime.email, billing.pipeline.email_channel) before it calls notify_cycle.
NOTIFY_ONE_AT_A_TIME = """
import sys

import billing.pipeline
from billing.config import Settings
from billing.runtime import Runtime
from notifiers.email import EmailNotifier

def one_connection(runtime):
    s = runtime.settings
    return EmailNotifier(
        s.smtp_host, s.smtp_port, s.smtp_tls, s.smtp_username, s.smtp_password, s.mail_from,
        pool_size=1, timeout=10.0, backoff_base=0.01, backoff_cap=0.05,
    )

Runtime.email = property(one_connection)
email_channel = billing.pipeline.email_channel
billing.pipeline.email_channel = lambda notifier, supplier, link_base=None: email_channel(
    notifier, supplier, link_base, batch=1
)
print(billing.pipeline.notify_cycle(Runtime(Settings.from_env()), sys.argv[1], sys.argv[2]), flush=True)
"""
KILL_AT = 40


def notify_env(settings, server) -> dict[str, str]:
    """The environment of a notify process of its own, over `settings` and the SMTP `server`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("INVOICES_")}
    return env | {
        "INVOICES_HOME": str(settings.home),
        "INVOICES_SOURCE_URL": str(SAMPLES),
        "INVOICES_SMTP_HOST": server.host,
        "INVOICES_SMTP_PORT": str(server.port),
        "INVOICES_SMTP_TLS": "none",
        "PYTHONPATH": str(REPO),
    }


def test_a_notify_step_killed_half_way_sends_each_notice_once_after_the_rerun(settings_for):
    # Why one message in flight makes this exact: each result is recorded as the server
    # accepts that message, and a message accepted (250) but not yet recorded when the process
    # died is still "sending" in the ledger, so the re-run sends it again with the same
    # Message-ID: the documented at-least-once window, the messages in flight. With a pool of
    # one connection and a batch of one notice, every message before the killed one was
    # accepted AND recorded before the next was claimed, and the killed one was never accepted
    # (the server kills the client before its 250), so the re-run must send exactly the notices
    # the server has not got. (The default pool and batch: the test after this one.)
    handler = KillingHandler(kill_at=KILL_AT)
    with smtp_server(handler) as server:
        settings = settings_for(smtp_host=server.host, smtp_port=server.port, smtp_tls="none")
        pipeline.run_cycle(Runtime(settings), CYCLE, run_id="run-1", send_notices=False)
        rows = email_rows(settings)
        assert len(rows) > KILL_AT and {row.status for row in rows} == {"pending"}
        assert handler.received == []

        env = notify_env(settings, server)
        victim = subprocess.Popen(
            [sys.executable, "-c", NOTIFY_ONE_AT_A_TIME, CYCLE, "run-2"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        handler.victim = victim
        try:
            out, err = victim.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            victim.kill()
            out, err = victim.communicate(timeout=10)
            pytest.fail(f"the notify process was not killed within 60 s:\n{err.decode()[-2000:]}")
        assert victim.returncode == -signal.SIGKILL, (out.decode(), err.decode()[-2000:])
        assert handler.killed.wait(timeout=10)  # the handler may still be finishing

        # Killed before the reply to the 40th DATA: 39 delivered and recorded, one in flight.
        ids = message_ids(settings, rows)
        before = handler.message_ids()
        assert len(before) == KILL_AT - 1 and set(before.values()) == {1}
        after_kill = {row.key: row for row in email_rows(settings)}
        assert Counter(row.status for row in after_kill.values()) == {
            "sent": KILL_AT - 1,
            "sending": 1,
            "pending": len(rows) - KILL_AT,
        }
        assert {ids[mid] for mid in before} == {
            key for key, row in after_kill.items() if row.status == "sent"
        }
        [in_flight] = [key for key, row in after_kill.items() if row.status == "sending"]
        assert ids[handler.killed_message_id] == in_flight
        assert handler.killed_message_id not in before

        # A re-run within the lease leaves the dead run's claim alone: that notice stays
        # "sending" (counted as pending), never lost and not yet sent again.
        pipeline.notify_cycle(Runtime(settings), CYCLE, "run-3")
        held = {row.key: row.status for row in email_rows(settings)}
        assert held[in_flight] == "sending"
        assert Counter(held.values()) == {"sent": len(rows) - 1, "sending": 1}
        # Once the lease has run out, the next run takes the abandoned notice over.
        pipeline.notify_cycle(Runtime(replace(settings, notify_lease_seconds=0)), CYCLE, "run-3")

    final = email_rows(settings)
    assert [row.key for row in final] == [row.key for row in rows]  # nothing lost
    assert {row.status for row in final} == {"sent"}
    assert handler.message_ids() == {mid: 1 for mid in ids}  # none twice, none missing
    for row in final:
        assert row.provider_message_id == message_id(row.key, settings.mail_from)
        assert row.attempts == (2 if row.key == in_flight else 1)
        assert row.run_id == ("run-2" if row.key in {ids[mid] for mid in before} else "run-3")


# The notify step as it runs in production: the default pool (4 connections) and batch.
NOTIFY_DEFAULT = """
import sys

import billing.pipeline
from billing.config import Settings
from billing.runtime import Runtime

print(billing.pipeline.notify_cycle(Runtime(Settings.from_env()), sys.argv[1], sys.argv[2]), flush=True)
"""
POOL = 4  # EmailNotifier's default pool_size


@pytest.mark.parametrize("kill_at", [25, 60])
def test_a_notify_step_killed_mid_batch_sends_again_only_what_was_in_flight(settings_for, kill_at):
    # Results are recorded as each message is accepted, not when its claimed batch of 100 is
    # done: killed mid-batch, the re-run sends again only the messages that were in flight on
    # the pool's connections (before: every accepted message of the batch, 28 and 32 in two
    # trials of the outside probe).
    handler = KillingHandler(kill_at=kill_at)
    with smtp_server(handler) as server:
        settings = settings_for(smtp_host=server.host, smtp_port=server.port, smtp_tls="none")
        pipeline.run_cycle(Runtime(settings), CYCLE, run_id="run-1", send_notices=False)
        rows = email_rows(settings)
        env = notify_env(settings, server)
        victim = subprocess.Popen(
            [sys.executable, "-c", NOTIFY_DEFAULT, CYCLE, "run-2"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        handler.victim = victim
        try:
            victim.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            victim.kill()
            pytest.fail("the notify process was not killed within 60 s")
        assert victim.returncode == -signal.SIGKILL
        assert handler.killed.wait(timeout=10)
        accepted = len(handler.message_ids())
        # after the lease, a re-run sends whatever the dead run left unrecorded
        pipeline.notify_cycle(Runtime(replace(settings, notify_lease_seconds=0)), CYCLE, "run-3")

    final = email_rows(settings)
    assert {row.status for row in final} == {"sent"}
    received = handler.message_ids()
    assert set(received) == set(message_ids(settings, rows))  # every notice arrived
    twice = sum(1 for count in received.values() if count > 1)
    assert max(received.values()) <= 2
    assert twice < POOL, f"{twice} sent twice of {accepted} accepted before the kill"
