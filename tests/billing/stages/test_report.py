"""The run report (contract 4) and its plain-text form: quarantine and failed notices counted
from staging and the ledger, shown to ops without any personal data."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections import Counter

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import renderers.messages
from billing import pipeline
from billing.cli import app
from billing.domain.errors import PermanentDeliveryError
from billing.runtime import Runtime
from billing.stages import reporting
from billing.stages.report_text import format_report, mask_contacts, pick_examples
from storage.ledger import invoices, notices, open_ledger, runs
from tests.support.paths import SAMPLES
from tests.support.smtp import RecordingHandler, smtp_notifier, smtp_server

CYCLE = "2026-11"
FAILED = ("failed-permanent", "failed-retryable")
FAST = {"timeout": 5.0, "max_attempts": 5, "backoff_base": 0.01, "backoff_cap": 0.05}
EXAMPLE_KEYS = {
    "quarantine": {"file", "row", "customer_id", "column", "reason", "action"},
    "failures": {"number", "customer_id", "channel", "status", "attempts", "reason"},
}


class QuotingRefuser(RecordingHandler):
    """Answers 550 to the `refused_at`-th new (ASCII) recipients, quoting the address as real
    servers do; the e-mail notifier must keep it out of the ledger."""

    def __init__(self, refused_at: set[int]) -> None:
        super().__init__()
        self.refused_at = refused_at
        self.seen: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            if address.isascii() and address not in self.seen:
                self.seen.append(address)
                if len(self.seen) in self.refused_at:
                    self.refused.add(address)
            self.rcpt_attempts[address] += 1
        if address in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"


def ledger_notices(settings) -> list:
    with open_ledger(settings.ledger_url).connect() as conn:
        return conn.execute(
            sa.select(notices, invoices.c.customer_id)
            .join(invoices, invoices.c.number == notices.c.number)
            .where(notices.c.cycle_id == CYCLE)
            .order_by(notices.c.key)
        ).all()


def stored_report_texts(settings, run_id: str) -> list[str]:
    """The report as the archive and the ledger's run row hold it."""
    archived = settings.home / "archive" / pipeline.report_key(CYCLE, run_id)
    with open_ledger(settings.ledger_url).connect() as conn:
        row = conn.execute(sa.select(runs.c.report).where(runs.c.run_id == run_id)).scalar_one()
    return [archived.read_text(encoding="utf-8"), row]


def personal_forms(recipient: str) -> set[str]:
    """The ways a recipient could show up: as stored, lower-cased, a phone without its '+'."""
    forms = {recipient, recipient.lower()}
    if recipient.startswith("+"):
        forms.add(recipient[1:])
    return {f for f in forms if len(f) >= 6}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_cycle_with_failures_reports_them_by_reason_without_personal_data(
    settings_for, ledger_url, monkeypatch
):
    monkeypatch.setattr(
        Runtime, "email", property(lambda runtime: smtp_notifier(runtime.settings, **FAST))
    )
    # Some SMS texts cannot be built, with an error that quotes the customer's contacts (the
    # ledger keeps the reason as raised): the report must mask them all the same.
    real_render = renderers.messages.render_sms
    broken: set[str] = set()

    def render(invoice, supplier_name, link=None):
        if len(broken) < 3 or invoice.number in broken:
            broken.add(invoice.number)
            customer = invoice.customer
            raise PermanentDeliveryError(
                f"cannot text {customer.phone} (also tried {customer.email})"
            )
        return real_render(invoice, supplier_name, link)

    monkeypatch.setattr(renderers.messages, "render_sms", render)

    handler = QuotingRefuser(refused_at={5, 50, 100, 150})
    with smtp_server(handler) as server:
        settings = settings_for(
            ledger_url=ledger_url, smtp_host=server.host, smtp_port=server.port, smtp_tls="none"
        )
        report = pipeline.run_cycle(Runtime(settings), CYCLE, run_id="run-1")
        rows = ledger_notices(settings)
        # A re-run sends nothing and counts the same failures and quarantine once.
        again = pipeline.run_cycle(Runtime(settings), CYCLE, run_id="run-2")

    # --- the new keys
    assert report["period"] == {"start": "2026-10-01", "end": "2026-10-31"}
    assert report["issue_date"] == "2026-11-01"

    # --- quarantine: what staging's quarantine.csv holds, by reason
    quarantine_csv = (settings.home / "staging" / CYCLE / "quarantine.csv").read_text("utf-8")
    entries = list(csv.DictReader(io.StringIO(quarantine_csv)))
    assert entries
    quarantine = report["quarantine"]
    assert quarantine["by_reason"] == dict(Counter(e["reason"] for e in entries))
    assert quarantine["entries"] == len(entries)
    assert quarantine["flagged"] == dict(
        Counter(e["reason"] for e in entries if e["action"] == "flagged")
    )
    assert quarantine["flagged"] == {"invalid_email": 1, "invalid_phone": 1}
    bad_rows = json.loads((SAMPLES / CYCLE / "BAD_ROWS.json").read_text())
    assert {b["reason"] for b in bad_rows} <= set(quarantine["by_reason"])
    assert 0 < len(quarantine["examples"]) <= 20
    # the examples spread over the reasons (15 of them here) and are real entries
    assert {e["reason"] for e in quarantine["examples"]} == set(quarantine["by_reason"])
    listed = {(e["file"], int(e["row"]), e["column"], e["reason"], e["action"]) for e in entries}
    for example in quarantine["examples"]:
        assert set(example) == EXAMPLE_KEYS["quarantine"]
        key = (example["file"], example["row"], example["column"], example["reason"])
        assert (*key, example["action"]) in listed

    # --- failures: the ledger's failed notices, once
    failed = [r for r in rows if r.status in FAILED]
    assert len([r for r in failed if r.channel == "email"]) == len(handler.refused) == 4
    assert len([r for r in failed if r.channel == "sms"]) == len(broken) == 3
    failures = report["failures"]
    assert failures["count"] == len(failed) == 7
    assert sum(failures["by_reason"].values()) == failures["count"]
    assert failures["by_status"] == dict(Counter(r.status for r in failed))
    assert again["failures"] == failures
    assert again["quarantine"] == quarantine
    assert report["notices"]["email"]["failed"] == 4 and report["notices"]["sms"]["failed"] == 3
    by_key = {(r.number, r.channel): r for r in failed}
    assert len(failures["examples"]) == len(failed)
    for example in failures["examples"]:
        assert set(example) == EXAMPLE_KEYS["failures"]
        row = by_key[(example["number"], example["channel"])]
        assert (example["customer_id"], example["status"], example["attempts"]) == (
            row.customer_id,
            row.status,
            row.attempts,
        )
    reasons = {e["channel"]: e["reason"] for e in failures["examples"]}
    assert reasons["email"].startswith("550 5.1.1") and "<recipient>" in reasons["email"]
    assert "<phone>" in reasons["sms"] and "<email>" in reasons["sms"]
    # the ledger itself does hold the contacts in those SMS reasons: the report masked them
    assert any("@" in r.last_error for r in failed if r.channel == "sms")

    # --- no personal data in the report (JSON, archived, in the ledger) nor in its text
    text = format_report(report)
    outputs = {
        "report": json.dumps(report, ensure_ascii=False),
        "text": text,
        "text run-2": format_report(again),
    }
    for run_id in ("run-1", "run-2"):
        for i, body in enumerate(stored_report_texts(settings, run_id)):
            outputs[f"{run_id} stored {i}"] = body
    recipients = {r.recipient for r in rows if r.recipient}
    assert any("@" in r for r in recipients) and any(r.startswith("+") for r in recipients)
    details = {e["detail"] for e in entries if e["detail"]}
    quoted = {b["value"] for b in bad_rows if len(b["value"]) >= 6}  # e.g. the broken e-mail
    assert "ion.popescu@@example" in quoted
    for name, output in outputs.items():
        lowered = output.lower()
        for recipient in recipients:
            for form in personal_forms(recipient):
                assert form.lower() not in lowered, (name, "a recipient")
        for detail in details:
            assert detail not in output, (name, detail)
        for value in quoted - {"C0000001", "C9999999", "2026-10-01"}:
            assert value not in output, (name, value)
        assert '"detail"' not in output and '"recipient"' not in output

    # --- the text: the numbers ops look for
    assert re.search(rf"^\s*invoices issued\s+{report['invoices_issued']}$", text, re.M)
    assert re.search(rf"^\s*already issued\s+{report['invoices_existing']}$", text, re.M)
    assert report["invoices_issued"] > 0
    for channel, counts in report["notices"].items():
        line = rf"^\s*{channel}\s+{counts['sent']}\s+{counts['failed']}\s+{counts['pending']}$"
        assert re.search(line, text, re.M), channel
    assert re.search(rf"^\s*gross\s+{re.escape(report['totals']['gross'])}$", text, re.M)
    assert "billed period  2026-10-01 to 2026-10-31" in text
    assert "failed notices (7)" in text
    assert re.search(r"^\s*invalid_email\s+1\s+flagged$", text, re.M)
    assert re.search(r"^\s*customer_quarantined\s+\d+\s+quarantined$", text, re.M)
    assert "\x1b" not in text  # no colours in a task log

    # --- `invoices report` prints the same text, for the newest run
    monkeypatch.setenv("INVOICES_HOME", str(settings.home))
    monkeypatch.setenv("INVOICES_SOURCE_URL", str(SAMPLES))
    monkeypatch.setenv("INVOICES_LEDGER_URL", settings.ledger_url)
    result = CliRunner().invoke(app, ["report", CYCLE])
    assert result.exit_code == 0, result.output
    assert result.output == format_report(pipeline.load_report(Runtime(settings), CYCLE)) + "\n"
    assert "invoices issued" in result.output and "run-2" in result.output


OLD_REPORT = {  # a report as finalize_report wrote it before period/quarantine/failures
    "cycle_id": "2026-10",
    "run_id": "scheduled__2026-10-01T00:00:00+00:00",
    "started_at": "2026-10-01T00:00:05.123456+00:00",
    "finished_at": "2026-10-01T00:12:35.654321+00:00",
    "customers": 1200,
    "quarantined_customers": 7,
    "quarantined_rows": 9,
    "flagged_customers": 3,
    "invoices_issued": 1193,
    "invoices_existing": 0,
    "pdfs_archived": 1190,
    "pdfs_existing": 3,
    "notices": {
        "email": {"sent": 801, "failed": 2, "pending": 1},
        "sms": {"sent": 377, "failed": 0, "pending": 0},
    },
    "paper_queued": 41,
    "fallbacks": 5,
    "totals": {"net": "100000.00", "vat": "21000.00", "gross": "121000.00"},
    "chunks": 2,
    "manifest": {"key": "manifests/2026-10.json", "sha256": "0" * 64},
    "quarantine_report": "reports/2026-10/scheduled__2026-10-01T00_00_00+00_00.quarantine.csv",
}


def test_format_report_reads_an_old_report_without_the_new_keys():
    text = format_report(OLD_REPORT)
    for label, value in (
        ("customers", 1200), ("quarantined customers", 7), ("quarantined rows", 9),
        ("flagged customers", 3), ("invoices issued", 1193), ("already issued", 0),
        ("PDFs archived", 1190), ("already archived", 3), ("paper queued", 41),
        ("fallbacks", 5), ("chunks", 2),
    ):  # fmt: skip
        assert re.search(rf"^  {label}\s+{value}$", text, re.M), label
    assert re.search(r"^\s*email\s+801\s+2\s+1$", text, re.M)
    assert re.search(r"^\s*sms\s+377\s+0\s+0$", text, re.M)
    assert re.search(r"^\s*gross\s+121000\.00$", text, re.M)
    assert re.search(r"^  started\s+2026-10-01 00:00:05 UTC$", text, re.M)
    assert "(took 12 min 30 s)" in text
    assert OLD_REPORT["quarantine_report"] in text
    assert "billed period" not in text and "failed notices" not in text
    assert "\x1b" not in text and not text.endswith("\n")
    # the barest report still formats
    assert format_report({"cycle_id": "2026-10", "run_id": "r"}).startswith("run\n===")


def test_format_report_masks_contacts_and_control_characters_it_is_given():
    report = {
        "cycle_id": "2026-12",
        "run_id": "r",
        "failures": {
            "count": 2,
            "by_status": {"failed-permanent": 1, "failed-retryable": 1},
            "by_reason": {"bounce for ana@example.ro\nFAKE LOG LINE": 1, "throttled": 1},
            "examples": [
                {"number": "OR-1", "customer_id": "ana@example.ro", "channel": "email",
                 "status": "failed-permanent", "attempts": 1, "reason": "to +40722000456"},
                {"number": "OR-2", "customer_id": "C1", "channel": "sms",
                 "status": "failed-retryable", "attempts": 3, "reason": "throttled"},
            ],
        },
    }  # fmt: skip
    text = format_report(report)
    assert "ana@example.ro" not in text and "40722000456" not in text
    assert "\nFAKE LOG LINE" not in text and "<email> FAKE LOG LINE" in text
    assert "failed notices (2, 1 to be retried)" in text
    assert re.search(r"^\s*OR-2\s+C1\s+sms\s+failed-retryable\s+3\s+throttled$", text, re.M)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("550 5.1.1 <ana.pop@example.ro>: User unknown", "550 5.1.1 <<email>>: User unknown"),
        ("mailbox ion.popescu@@example full", "mailbox <email> full"),
        ("RCPT TO:user+tag@xn--mnchen-3ya.de refused", "RCPT TO:<email> refused"),
        ("InvalidParameter: +40722000456 is opted out", "InvalidParameter: <phone> is opted out"),
        ("no route to 0722 123 456 or 0040722123456", "no route to <phone> or <phone>"),
        ("sent to +40******456", "sent to +40******456"),  # already masked
        ("451 4.7.1 try after 2026-10-01 from 127.0.0.1", "451 4.7.1 try after 2026-10-01 from 127.0.0.1"),
        ("notice OR00000123:sms of C0000001", "notice OR00000123:sms of C0000001"),
    ],
)  # fmt: skip
def test_mask_contacts(given, shown):
    assert mask_contacts(given) == shown
    assert mask_contacts(shown) == shown


def test_pick_examples_spreads_over_the_reasons_in_order():
    items = [{"reason": "a", "i": i} for i in range(30)] + [
        {"reason": "b", "i": 30},
        {"reason": "c", "i": 31},
        {"reason": "b", "i": 32},
    ]
    picked = pick_examples(items, "reason", 5)
    assert [p["i"] for p in picked] == [0, 1, 30, 31, 32]
    assert pick_examples(items[:2], "reason", 5) == items[:2]
    assert pick_examples([], "reason", 5) == []


def test_quarantine_summary_leaves_the_detail_out():
    report_csv = (
        b"file,row,customer_id,column,reason,detail,action\n"
        b"customers.csv,4,C1,email,invalid_email,'ana@@example.ro' is not an address,flagged\n"
        b"customers.csv,5,ana@example.ro,customer_id,invalid_id,'ana@example.ro' is no id,quarantined\n"
        b"customers.csv,6,C3,phone,invalid_phone,'0722 123 456' is not E.164,flagged\n"
        b"customers.csv,7,C4,phone,invalid_phone,'0722 999 456' is not E.164,flagged\n"
    )
    summary = reporting.quarantine_summary(report_csv)
    assert summary["by_reason"] == {"invalid_email": 1, "invalid_id": 1, "invalid_phone": 2}
    assert summary["flagged"] == {"invalid_email": 1, "invalid_phone": 2}
    assert summary["entries"] == 4
    assert [e["customer_id"] for e in summary["examples"]] == ["C1", "<invalid id>", "C3", "C4"]
    assert summary["examples"][0] == {
        "file": "customers.csv", "row": 4, "customer_id": "C1", "column": "email",
        "reason": "invalid_email", "action": "flagged",
    }  # fmt: skip
    body = json.dumps(summary) + format_report({"quarantine": summary})
    for secret in ("ana@", "0722", "example.ro", "E.164", "is not"):
        assert secret not in body


def _export_without_customers(source, header_only: bool) -> None:
    shutil.copytree(SAMPLES / CYCLE, source / CYCLE)
    customers = source / CYCLE / "customers.csv"
    lines = customers.read_text(encoding="utf-8").splitlines(keepends=True)
    if header_only:
        customers.write_text(lines[0], encoding="utf-8")
    else:  # every row quarantined: no valid customer id
        customers.write_text(lines[0] + "".join("!" + line for line in lines[1:]), encoding="utf-8")
    (source / CYCLE / "cycle.json").write_text(
        json.dumps({
            k: v for k, v in json.loads((SAMPLES / CYCLE / "cycle.json").read_text()).items()
            if k != "control"
        })
    )  # fmt: skip


@pytest.mark.parametrize(
    ("header_only", "warning"),
    [
        pytest.param(True, "the export lists no customer", id="header-only"),
        pytest.param(False, "customers were quarantined", id="every-row-quarantined"),
    ],
)
def test_a_cycle_that_invoices_nobody_ends_with_a_loud_report(
    settings_for, tmp_path, header_only, warning
):
    # Zero invoices is a valid outcome: the run finishes, writes its report and quarantine
    # report, and says loudly that nobody was invoiced (it used to stay "running" forever).
    _export_without_customers(tmp_path / "source", header_only)
    settings = settings_for(source_url=tmp_path / "source")
    report = pipeline.run_cycle(Runtime(settings), CYCLE, run_id="empty-1")
    assert (report["invoices_issued"], report["pdfs_archived"], report["chunks"]) == (0, 0, 0)
    assert len(report["warnings"]) == 1 and warning in report["warnings"][0]
    archived = settings.home / "archive" / pipeline.report_key(CYCLE, "empty-1")
    assert json.loads(archived.read_text())["warnings"] == report["warnings"]
    assert (settings.home / "archive" / report["quarantine_report"]).exists()
    with open_ledger(settings.ledger_url).connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM runs WHERE run_id = 'empty-1'"))
        assert status.scalar_one() == "finished"
    assert format_report(report).startswith("WARNING\n=======\n! no invoice")
