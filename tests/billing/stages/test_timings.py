"""Stage timings: every stage of a run records how long it took and how much it did, the run
report adds them up per stage (contract 4's `timings` and `rate`), and long stages tell people
watching how far they are."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from billing.stages.progress import LogProgress
from billing.stages.report_text import format_report
from storage.ledger import open_ledger, stage_timings
from storage.timings import record_timing, stage_spans

STAGES = ["stage", "issue", "render_archive", "efactura_validate", "notify_email", "notify_sms",
          "print_batch"]  # fmt: skip


def test_the_run_report_times_every_stage_and_the_whole_run(issued_sample):
    _, reports = issued_sample
    for report in reports:
        timings, throughput = report["timings"], report["throughput"]

        assert list(timings) == [*STAGES, "report", "total"]
        assert all(seconds >= 0 for seconds in timings.values())
        # the stages ran one after the other here: together they fit in the run
        assert sum(timings[s] for s in STAGES) <= timings["total"]
        invoiced = report["invoices_issued"] + report["invoices_existing"]
        assert abs(report["rate"] - invoiced / timings["total"]) < 0.05 * report["rate"]
        assert throughput["stage"]["items"] == report["customers"]
        assert throughput["issue"]["items"] == invoiced
        assert throughput["render_archive"]["items"] == report["pdfs_archived"]
        assert throughput["render_archive"]["parts"] == report["chunks"]
        # every XML the run made was validated in it, and the samples' are all valid
        assert throughput["efactura_validate"]["items"] == report["efactura_xmls"] > 0
        assert report["efactura_valid"] == report["efactura_xmls"]
        assert report["efactura_invalid"] == report["efactura_unvalidated"] == 0
        sent = {ch: sum(counts.values()) for ch, counts in report["notices"].items()}
        assert throughput["notify_email"]["items"] == sent["email"]
        assert throughput["notify_sms"]["items"] == sent["sms"]
        assert throughput["print_batch"]["items"] == report["paper_queued"]
        text = format_report(report)
        assert "timings" in text and "render_archive" in text
        assert f"{report['rate']:.1f}" in text.split("end to end")[1].splitlines()[0]


def test_a_retried_part_replaces_its_timing_and_parallel_parts_span_once(tmp_path):
    engine = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    t0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    record_timing(engine, "run-1", "render_archive", 1, at(0), at(30), 0)  # failed attempt
    record_timing(engine, "run-1", "render_archive", 1, at(40), at(50), 100)  # its retry
    record_timing(engine, "run-1", "render_archive", 2, at(42), at(55), 100)  # beside it
    record_timing(engine, "run-1", "stage", 0, at(-10), at(-5), 200)
    record_timing(engine, "run-2", "stage", 0, at(0), at(1), 7)

    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(stage_timings)).scalar() == 4
    stage, render = stage_spans(engine, "run-1")
    assert (stage.stage, stage.seconds, stage.items) == ("stage", 5.0, 200)
    assert (render.stage, render.items, render.parts) == ("render_archive", 200, 2)
    assert render.seconds == 15.0 and render.busy_seconds == 23.0


def test_progress_lines_come_every_few_seconds_and_at_the_end(caplog):
    now = [0.0]
    progress = LogProgress("render_archive chunk 2 of 5", every=5.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="billing.progress")

    progress.begin(1000)
    for _ in range(9):
        now[0] += 1.0
        progress.advance(100)
    now[0] += 1.0
    progress.advance(100)

    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "render_archive chunk 2 of 5: 500/1000 (50%), 100/s, ETA 5 s",
        "render_archive chunk 2 of 5: 1000/1000 (100%), 100/s, done in 10.0 s",
    ]


def test_a_stage_with_nothing_to_do_says_so_at_once(caplog):
    caplog.set_level(logging.INFO, logger="billing.progress")
    LogProgress("notify_sms chunk 1 of 1", clock=lambda: 0.0).begin(0)
    assert [r.getMessage() for r in caplog.records] == [
        "notify_sms chunk 1 of 1: 0/0, 0/s, done in 0.0 s"
    ]
