"""The notify step sends from the outbox only: each (invoice, channel) once, whatever re-runs."""

from __future__ import annotations

import email
import json

import pytest
import sqlalchemy as sa

from billing import pipeline
from billing.runtime import Runtime
from storage.ledger import notices, open_ledger


def outbox_rows(settings) -> list:
    with open_ledger(settings.ledger_url).connect() as conn:
        return conn.execute(sa.select(notices).order_by(notices.c.key)).all()


def test_embedded_run_sends_each_notice_once_and_reports_it(settings_for):
    settings = settings_for()
    first = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1")
    rows = outbox_rows(settings)
    emails = sorted((settings.home / "outbox" / "email").glob("*.eml"))
    sms = [
        json.loads(line)
        for line in (settings.home / "outbox" / "sms.jsonl").read_text().splitlines()
    ]
    by_channel = {ch: [r for r in rows if r.channel == ch] for ch in ("email", "sms", "paper")}
    assert len(emails) == len(by_channel["email"]) > 0
    assert len(sms) == len(by_channel["sms"]) > 0
    assert all(
        r.status == "sent" and r.attempts == 1 for r in by_channel["email"] + by_channel["sms"]
    )
    assert first["notices"]["email"] == {"sent": len(emails), "failed": 0, "pending": 0}
    assert first["notices"]["sms"] == {"sent": len(sms), "failed": 0, "pending": 0}

    message = email.message_from_bytes(emails[0].read_bytes())
    number = emails[0].name.split("_")[0]  # the file is named after the idempotency key
    assert number in message["Subject"]
    attachments = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    assert attachments[0].get_filename() == f"{number}.pdf"
    assert attachments[0].get_payload(decode=True).startswith(b"%PDF")
    assert {len(m["text"]) <= 160 for m in sms} == {True}

    again = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-2")
    assert sorted((settings.home / "outbox" / "email").glob("*.eml")) == emails
    assert len((settings.home / "outbox" / "sms.jsonl").read_text().splitlines()) == len(sms)
    assert [(r.key, r.status, r.attempts) for r in outbox_rows(settings)] == [
        (r.key, r.status, r.attempts) for r in rows
    ]
    assert again["notices"] == first["notices"]


def test_a_run_that_does_not_send_leaves_notices_pending(settings_for):
    settings = settings_for()
    report = pipeline.run_cycle(
        Runtime(settings), "2026-11", run_id="backfill-1", send_notices=False
    )
    assert report["notices"]["email"]["sent"] == 0 and report["notices"]["email"]["pending"] > 0
    assert not (settings.home / "outbox" / "email").exists()
    assert {r.status for r in outbox_rows(settings)} == {"pending"}


def test_a_notice_that_cannot_be_built_fails_alone(settings_for, monkeypatch):
    import renderers.messages
    from billing.domain.errors import PermanentDeliveryError

    settings = settings_for()
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1", send_notices=False)
    real = renderers.messages.render_sms
    broken = {}

    def render(invoice, supplier_name, link=None):
        if not broken:
            broken[invoice.number] = True
            raise PermanentDeliveryError("supplier name does not fit one segment")
        return real(invoice, supplier_name, link)

    monkeypatch.setattr(renderers.messages, "render_sms", render)
    results = pipeline.notify_cycle(Runtime(settings), "2026-11", "run-1")
    rows = {r.key: r for r in outbox_rows(settings) if r.channel == "sms"}
    [number] = broken
    assert rows[f"{number}:sms"].status == "failed-permanent"
    assert "does not fit" in rows[f"{number}:sms"].last_error
    assert results["sms"].failed == 1 and results["sms"].sent == len(rows) - 1


def test_ops_can_resend_the_failed_notices_of_a_cycle(settings_for):
    settings = settings_for()
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1")
    engine = open_ledger(settings.ledger_url)
    failed = [r.key for r in outbox_rows(settings) if r.channel == "email"][:3]
    with engine.begin() as conn:  # as if the relay had refused them
        conn.execute(
            notices.update()
            .where(notices.c.key.in_(failed))
            .values(status="failed-permanent", last_error="550")
        )
    for key in failed:
        (settings.home / "outbox" / "email" / f"{key.replace(':', '_')}.eml").unlink()
    results = pipeline.resend_failed(Runtime(settings), "2026-11", "resend-1", ("email",))
    assert (results["email"].sent, results["email"].failed) == (3, 0)
    rows = {r.key: r for r in outbox_rows(settings)}
    assert all(rows[k].status == "sent" and rows[k].attempts == 2 for k in failed)
    again = pipeline.resend_failed(Runtime(settings), "2026-11", "resend-2", ("email",))
    assert again["email"].sent == 0  # nothing failed any more: nothing is sent twice


def test_two_notify_runs_at_once_never_send_a_notice_twice(settings_for):
    import threading
    import time
    from collections import Counter

    from billing.stages.notifying import Channel, notify_invoices
    from billing.stages.staging import read_chunk_customer_ids
    from notifiers.base import DeliveryResult, Outgoing
    from storage.archive import open_archive
    from storage.blobs import open_store

    settings = settings_for(chunk_size=1000)
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1", send_notices=False)
    sent: Counter = Counter()
    lock = threading.Lock()

    class SlowRecorder:
        def send(self, messages, on_result=None):
            time.sleep(0.01)  # keep both runs in flight at the same time
            with lock:
                sent.update(m.key for m in messages)
            return [DeliveryResult(m.key, "sent", provider_message_id=m.key) for m in messages]

    channel = Channel(
        "email",
        SlowRecorder(),
        lambda inv, to, pdf: Outgoing(f"{inv.number}:email", to, "s", "t"),
        batch=5,
    )
    staging = open_store(settings.staging_url)
    [ref] = pipeline.load_staged(staging, "2026-11").chunks
    ids = read_chunk_customer_ids(staging, ref)
    engine, archive = open_ledger(settings.ledger_url), open_archive(settings.archive_url)
    runs = [
        threading.Thread(
            target=notify_invoices, args=(engine, archive, "2026-11", ids, channel, f"run-{n}")
        )
        for n in (2, 3)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    email_keys = {r.key for r in outbox_rows(settings) if r.channel == "email"}
    assert set(sent) == email_keys and set(sent.values()) == {1}
    assert {r.status for r in outbox_rows(settings) if r.channel == "email"} == {"sent"}


def test_emails_and_sms_can_link_to_the_self_service_page(settings_for):
    settings = settings_for(
        mail_link_url="https://contul-meu.example.ro/facturi",
        portal_url="https://contul-meu.example.ro",
    )
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1")
    sms = (settings.home / "outbox" / "sms.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in sms]
    assert texts and all(t.endswith(" https://contul-meu.example.ro") for t in texts)
    first = sorted((settings.home / "outbox" / "email").glob("*.eml"))[0]
    message = email.message_from_bytes(first.read_bytes())
    number = first.name.split("_")[0]
    assert not [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    plain = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    text = plain.get_payload(decode=True).decode("utf-8")
    assert f"https://contul-meu.example.ro/facturi/?invoice={number}" in text


def test_a_configuration_error_while_building_fails_the_run_not_the_notices(
    settings_for, monkeypatch
):
    import renderers.messages
    from billing.domain.errors import ConfigurationError

    settings = settings_for()
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1", send_notices=False)

    def render(invoice, supplier_name, link=None):
        raise ConfigurationError("the supplier file has no name")

    monkeypatch.setattr(renderers.messages, "render_sms", render)
    with pytest.raises(ConfigurationError, match="supplier file"):
        pipeline.notify_cycle(Runtime(settings), "2026-11", "run-1")
    statuses = {r.status for r in outbox_rows(settings) if r.channel == "sms"}
    assert statuses == {"pending"}  # none recorded failed one by one; a fixed run sends them all


def test_a_bad_sender_address_fails_the_run_and_records_no_notice(settings_for):
    from billing.domain.errors import ConfigurationError

    settings = settings_for()
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1", send_notices=False)

    with pytest.raises(ConfigurationError, match="INVOICES_MAIL_FROM"):
        pipeline.notify_cycle(Runtime(settings_for(mail_from="facturi")), "2026-11", "run-2")
    assert {r.status for r in outbox_rows(settings) if r.channel == "email"} == {"pending"}
    assert not (settings.home / "outbox" / "email").exists()
