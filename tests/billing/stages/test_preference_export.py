"""`invoices preferences export`: the changes customers made, as the CSV the billing system
imports: oldest first, times in UTC, cells a spreadsheet shows as text, no contacts."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from billing.cli import app
from billing.domain.model import Address
from billing.domain.preferences import Preference
from billing.stages.preference_export import EXPORT_COLUMNS, export_changes
from storage.ledger import open_ledger
from storage.preferences import record_change

T0 = datetime(2026, 11, 5, 8, 30, tzinfo=UTC)
BUCHAREST = timezone(timedelta(hours=2))
HOSTILE = Address('=HYPERLINK("http://evil","x")', "Iași", "Iași", "700259")
PLAIN = Address("Str. Zorilor nr. 30", "Drobeta-Turnu Severin", "Mehedinți", "220992")


def record(engine, customer_id, preference, source, when):
    with engine.begin() as conn:
        return record_change(conn, customer_id, preference, source, when)


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def changes(ledger_url):
    """Three changes: C1 twice (the first superseded), C2 once with a formula for a street."""
    engine = open_ledger(ledger_url)
    record(engine, "C1", Preference("paper", "sms", PLAIN), "web", T0)
    record(engine, "C2", Preference("paper", "none", HOSTILE), "web", T0 + timedelta(hours=1))
    record(engine, "C1", Preference("electronic", "email"), "ivr", T0 + timedelta(days=1))
    return ledger_url


def test_every_change_is_a_row_oldest_first_with_its_state(changes):
    text = "".join(export_changes(open_ledger(changes)))

    assert text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert not text.startswith("\ufeff") and "\r" not in text  # as the print batch CSV
    found = rows(text)
    assert [(r["customer_id"], r["source"], r["state"]) for r in found] == [
        ("C1", "web", "superseded"),
        ("C2", "web", "open"),
        ("C1", "ivr", "open"),
    ]
    assert [r["changed_at"] for r in found] == [
        "2026-11-05T08:30:00Z",
        "2026-11-05T09:30:00Z",
        "2026-11-06T08:30:00Z",
    ]
    first = found[0]
    assert [first[c] for c in EXPORT_COLUMNS[3:9]] == [
        "paper", "sms", "Str. Zorilor nr. 30", "Drobeta-Turnu Severin", "Mehedinți", "220992",
    ]  # fmt: skip
    assert found[1]["paper_street"] == '\'=HYPERLINK("http://evil","x")'  # shown as text
    assert found[2]["paper_street"] == ""


@pytest.mark.parametrize(
    ("since", "customers"),
    [
        pytest.param(T0 + timedelta(hours=1), ["C2", "C1"], id="at-a-change-included"),
        pytest.param(T0 + timedelta(hours=1, seconds=1), ["C1"], id="after-it"),
        # 11:30 in Bucharest is 09:30 UTC: C2's change
        pytest.param(datetime(2026, 11, 5, 11, 30, tzinfo=BUCHAREST), ["C2", "C1"], id="zone"),
    ],
)
def test_since_keeps_the_changes_made_at_or_after_it(changes, since, customers):
    found = rows("".join(export_changes(open_ledger(changes), since)))
    assert [r["customer_id"] for r in found] == customers


@pytest.fixture
def cli_env(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("INVOICES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INVOICES_LEDGER_URL", sqlite_url)
    engine = open_ledger(sqlite_url)
    record(engine, "C1", Preference("paper", "sms", PLAIN), "web", T0)
    record(engine, "C2", Preference("electronic", "both"), "sms", T0 + timedelta(days=2))
    return tmp_path


@pytest.mark.parametrize(
    ("since", "customers"),
    [
        pytest.param([], ["C1", "C2"], id="all"),
        pytest.param(["--since", "2026-11-06"], ["C2"], id="date"),
        pytest.param(["--since", "2026-11-05T08:30"], ["C1", "C2"], id="naive-is-utc"),
        pytest.param(["--since", "2026-11-05T10:30:01+02:00"], ["C2"], id="with-zone"),
    ],
)
def test_the_command_writes_the_csv_to_stdout(cli_env, since, customers):
    result = CliRunner().invoke(app, ["preferences", "export", *since])

    assert result.exit_code == 0, result.output
    assert [r["customer_id"] for r in rows(result.stdout)] == customers
    assert "+407" not in result.stdout and "@" not in result.stdout  # no contacts in it


def test_the_command_writes_a_file_with_out(cli_env):
    target = cli_env / "changes.csv"
    result = CliRunner().invoke(app, ["preferences", "export", "--out", str(target)])

    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert [r["customer_id"] for r in rows(data.decode("utf-8"))] == ["C1", "C2"]
    assert [p.name for p in cli_env.iterdir() if p.name.startswith(".changes")] == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["--since", "5 Nov"], ["--since", "ISO 8601"], id="since-not-iso"),
        pytest.param(["--since", "2026-13-01"], ["--since", "ISO 8601"], id="since-no-such-day"),
        pytest.param(["--out", "/no/such/folder/x.csv"], ["--out", "does not exist"], id="out"),
    ],
)
def test_a_bad_option_is_refused_naming_it(cli_env, args, words):
    result = CliRunner().invoke(app, ["preferences", "export", *args])

    assert result.exit_code == 2
    assert all(word in result.output for word in words), result.output


def test_a_slow_reader_of_the_export_never_holds_up_the_ledger(sqlite_url):
    """The export streams (to a pipe, say) while codes are asked and cycles issue: on SQLite,
    where every transaction takes the write lock, it must not keep one open between rows."""
    engine = open_ledger(sqlite_url)
    with engine.begin() as conn:
        for n in range(1200):  # more than a page of rows
            when = T0 + timedelta(seconds=(n + 1) // 2)  # a page ends between two at once
            record_change(conn, f"C{n}", Preference("electronic", "sms"), "web", when)
    lines = export_changes(engine)
    assert next(lines) and next(lines)  # header and first row read; the rest waits

    impatient = sa.create_engine(sqlite_url, connect_args={"timeout": 0.2})
    try:
        with impatient.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # what any writer of the ledger does
            conn.exec_driver_sql("ROLLBACK")
    finally:
        impatient.dispose()
    rest = rows("".join([",".join(EXPORT_COLUMNS) + "\n", *lines]))
    assert [r["customer_id"] for r in rest] == [f"C{n}" for n in range(1, 1200)]
