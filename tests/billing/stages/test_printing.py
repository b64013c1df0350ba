"""The print batch: paper invoices merged in postal-code order with a matching mailing CSV,
written once; a re-run or a crash before the notices were marked prints nothing twice."""

from __future__ import annotations

import csv
import io
import tracemalloc

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from billing import pipeline
from billing.runtime import Runtime
from billing.stages import printing
from storage.ledger import invoices, notices, open_ledger
from tests.support.cycle_export import customer_row, write_export


def batch_files(settings):
    return sorted((settings.home / "archive" / "print" / "2026-11").iterdir())


def test_paper_invoices_are_batched_by_postal_code_once(settings_for):
    settings = settings_for()
    report = pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-1")
    mailing_csv, merged_pdf = batch_files(settings)
    rows = list(csv.DictReader(io.StringIO(mailing_csv.read_text(encoding="utf-8"))))
    assert len(rows) == report["paper_queued"] > 0
    assert [r["postal_code"] for r in rows] == sorted(r["postal_code"] for r in rows)
    pages = PdfReader(merged_pdf).pages
    assert len(pages) == sum(int(r["pages"]) for r in rows)
    for row in rows[:5]:  # each invoice starts on the page the CSV says
        assert row["invoice_number"] in pages[int(row["first_page"]) - 1].extract_text()

    engine = open_ledger(settings.ledger_url)
    with engine.connect() as conn:
        paper = conn.execute(
            sa.select(invoices.c.number, invoices.c.paper_postal_code, invoices.c.postal_code)
            .join(notices, notices.c.number == invoices.c.number)
            .where(notices.c.channel == "paper")
        ).all()
        statuses = set(
            conn.execute(sa.select(notices.c.status).where(notices.c.channel == "paper")).scalars()
        )
    by_number = {r["invoice_number"]: r for r in rows}
    assert by_number.keys() == {p.number for p in paper} and statuses == {"sent"}
    with_paper_address = [p for p in paper if p.paper_postal_code]
    assert with_paper_address  # the sample has separate mailing addresses
    for p in with_paper_address:
        assert by_number[p.number]["postal_code"] == p.paper_postal_code

    # a crash after the batch was archived but before its notices were marked
    with engine.begin() as conn:
        conn.execute(notices.update().where(notices.c.channel == "paper").values(status="pending"))
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-2")
    assert batch_files(settings) == [mailing_csv, merged_pdf]  # the same batch, not a second one
    pipeline.run_cycle(Runtime(settings), "2026-11", run_id="run-3")
    assert batch_files(settings) == [mailing_csv, merged_pdf]


# --- the batch in parts: at most INVOICES_PRINT_BATCH_SIZE invoices a file -------------------


def paper_export(source, cycle_id: str, count: int) -> None:
    """`count` paper customers whose postal codes are out of customer order; every third mails
    to a paper address whose postal code sorts elsewhere than the billing one."""
    rows = []
    for n in range(1, count + 1):
        postal = f"{(n * 7919) % 899_999 + 100_000:06d}"
        fields = {"delivery": "paper", "notify": "none", "postal_code": postal}
        if n % 3 == 0:
            fields.update(paper_street=f"Str. Lungă nr. {n}", paper_city="Cluj-Napoca",
                          paper_county="Cluj", paper_postal_code=f"{999_999 - int(postal):06d}")  # fmt: skip
        rows.append(customer_row(f"C{n:07d}", **fields))
    write_export(source, cycle_id, rows)


def issued_paper_cycle(settings_for, tmp_path, count: int, part_size: int, **overrides):
    """A runtime whose cycle 2026-11 has `count` paper invoices issued and archived, none
    printed yet (the print step is what the test runs)."""
    source = tmp_path / "cycles"
    paper_export(source, "2026-11", count)
    settings = settings_for(source_url=source, print_batch_size=part_size, **overrides)
    runtime = Runtime(settings)
    pipeline.run_cycle(runtime, "2026-11", run_id="issue", send_notices=False)
    return runtime


def print_files(runtime) -> dict[str, bytes]:
    return {k: runtime.archive.get(k) for k in sorted(runtime.archive.list("print/2026-11/"))}


def mailing_rows(files: dict[str, bytes]) -> list[tuple[str, dict[str, str]]]:
    """(part, row) of every mailing CSV, parts in the order of their names."""
    return [
        (key.removesuffix(".csv"), row)
        for key, data in files.items()
        if key.endswith(".csv")
        for row in csv.DictReader(io.StringIO(data.decode("utf-8")))
    ]


# parts of 5 read 2 at a time (a read ends between parts) or all in one read
@pytest.mark.parametrize("per_read", [2, printing.PARTS_PER_READ])
def test_the_batch_is_cut_in_parts_of_at_most_n_in_one_postal_code_order(
    settings_for, tmp_path, ledger_url, per_read, monkeypatch
):
    monkeypatch.setattr(printing, "PARTS_PER_READ", per_read)
    runtime = issued_paper_cycle(settings_for, tmp_path, 23, 5, ledger_url=ledger_url)
    result = pipeline.print_cycle(runtime, "2026-11", "print-1")

    files = print_files(runtime)
    rows = mailing_rows(files)
    assert result.queued == 23 and len(result.parts) == 5 and result.batch == result.parts[0]
    assert sorted(files) == sorted(f"{p}{ext}" for p in result.parts for ext in (".pdf", ".csv"))
    assert list(result.parts) == sorted(result.parts)  # the names sort in print order
    sizes = [sum(1 for part, _ in rows if part == p) for p in result.parts]
    assert sizes == [5, 5, 5, 5, 3]
    # one order across every part: mailing postal code, then invoice number
    order = [(r["postal_code"], r["invoice_number"]) for _, r in rows]
    assert order == sorted(order) and len(set(order)) == 23

    with runtime.ledger.connect() as conn:
        ledger = {
            r.number: r
            for r in conn.execute(
                sa.select(invoices.c.number, invoices.c.postal_code, invoices.c.paper_postal_code,
                          notices.c.status, notices.c.provider_message_id)
                .join(notices, notices.c.number == invoices.c.number)
                .where(notices.c.channel == "paper")
            )
        }  # fmt: skip
    for part, row in rows:
        invoice = ledger[row["invoice_number"]]
        assert row["postal_code"] == (invoice.paper_postal_code or invoice.postal_code)
        assert (invoice.status, invoice.provider_message_id) == ("sent", part)

    for part in result.parts:  # each CSV numbers the pages of its own PDF
        pages = PdfReader(io.BytesIO(files[f"{part}.pdf"])).pages
        own = [r for p, r in rows if p == part]
        assert [int(r["first_page"]) for r in own] == [
            1 + sum(int(r["pages"]) for r in own[:i]) for i in range(len(own))
        ]
        assert len(pages) == sum(int(r["pages"]) for r in own)
        for r in own:
            assert r["invoice_number"] in pages[int(r["first_page"]) - 1].extract_text()


class CrashingArchive:
    """The run's archive, until the print run dies when `at` ("<part>:<key suffix>:before" or
    ":after") comes."""

    def __init__(self, archive, at: str) -> None:
        self.archive, self.at, self.puts = archive, at, 0
        self.parts: set[str] = set()

    def put_once(self, key, data, retain_until=None):
        self.parts.add(key.rsplit(".", 1)[0])
        part, suffix, when = self.at.split(":")
        here = len(self.parts) == int(part) and key.endswith(suffix)
        if here and when == "before":
            raise ConnectionError("the worker died")
        stored = self.archive.put_once(key, data, retain_until)
        if here:
            raise ConnectionError("the worker died")
        return stored

    def __getattr__(self, name):
        return getattr(self.archive, name)


def test_parts_merged_by_other_processes_are_the_parts_merged_here(
    settings_for, tmp_path, monkeypatch
):
    # two processes merge while this one reads the next part's PDFs and archives in order; a
    # read of 2 parts ends between them, so the last merges of each read are waited for
    monkeypatch.setattr(printing, "PARTS_PER_READ", 2)
    here = issued_paper_cycle(settings_for, tmp_path / "here", 23, 5, render_processes=1,
                              home=tmp_path / "here")  # fmt: skip
    there = issued_paper_cycle(settings_for, tmp_path / "there", 23, 5, render_processes=2,
                               home=tmp_path / "there")  # fmt: skip
    merged_here = pipeline.print_cycle(here, "2026-11", "print-1")
    with there.render_processes() as builders:
        assert builders is not None
    merged_there = pipeline.print_cycle(there, "2026-11", "print-1")
    assert merged_there == merged_here and len(merged_here.parts) == 5
    assert print_files(there) == print_files(here)
    assert pipeline.print_cycle(there, "2026-11", "print-2").queued == 0


@pytest.mark.parametrize(
    "crash",
    [
        pytest.param("2:.pdf:before", id="before-part-2"),
        pytest.param("2:.csv:before", id="part-2-pdf-archived"),
        pytest.param("2:.csv:after", id="part-2-archived-not-marked"),
    ],
)
def test_a_run_that_crashed_between_parts_prints_the_rest_once(settings_for, tmp_path, crash):
    runtime = issued_paper_cycle(settings_for, tmp_path, 12, 4)
    crashing = CrashingArchive(runtime.archive, crash)
    with pytest.raises(ConnectionError):
        printing.print_pending(runtime.ledger, crashing, "2026-11", "print-1", 10, 4)
    first = print_files(runtime)
    assert len([k for k in first if k.endswith(".csv")]) == (2 if crash.endswith("after") else 1)

    again = pipeline.print_cycle(runtime, "2026-11", "print-2")
    files = print_files(runtime)
    assert again.queued == 8 and len(again.parts) == 2  # part 1 is not printed again
    assert {k: files[k] for k in first} == first  # what the crashed run wrote is kept as it was
    assert len(files) == 6  # three parts, each one PDF and one CSV: no second copy of part 2
    numbers = [r["invoice_number"] for _, r in mailing_rows(files)]
    assert len(numbers) == len(set(numbers)) == 12
    assert pipeline.print_cycle(runtime, "2026-11", "print-3").queued == 0
    assert print_files(runtime) == files

    # the same invoices cut the same way give the same names and bytes in a fresh setup
    fresh = issued_paper_cycle(settings_for, tmp_path / "fresh", 12, 4, home=tmp_path / "fresh")
    pipeline.print_cycle(fresh, "2026-11", "print-1")
    assert print_files(fresh) == files


def test_memory_holds_one_part_however_many_parts_the_batch_has(settings_for, tmp_path):
    # before: every paper invoice's PDF and its pypdf objects were held until one merged file
    # was written, so the peak grew with the cycle (3.35 GB for 19,703 invoices)
    def cycle(name: str, count: int):
        return issued_paper_cycle(settings_for, tmp_path / name, count, 5, home=tmp_path / name)

    warm, small, large = cycle("warm", 5), cycle("small", 5), cycle("large", 40)

    def peak(runtime) -> tuple[int, int]:
        tracemalloc.start()
        try:
            result = pipeline.print_cycle(runtime, "2026-11", "print")
            return result.queued, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(warm)  # the first print of a process imports and compiles what the others reuse
    (small_queued, small_peak), (large_queued, large_peak) = peak(small), peak(large)
    assert (small_queued, large_queued) == (5, 40)
    # eight times the invoices in eight parts: the peak is one part's, not eight
    assert large_peak < 1.25 * small_peak, (large_peak, small_peak)
