"""Bill-cycle schedules: each bill-cycle day is a DAG whose data interval is exactly the month it
bills, from Europe/Bucharest midnight to midnight, also across a change of summer time; the run
bills the cycle of that interval and refuses an export whose cycle.json bills other days.

The intervals come from Airflow itself: the DAG file is parsed and serialized as the scheduler
sees it, then asked for the run the scheduler would create next and for the runs a backfill
would create.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from billing import pipeline
from billing.config import Settings
from billing.domain.cycles import (
    bill_cycle_days,
    billed_period,
    check_period,
    cycle_id_for,
    dag_id_for,
    resolve_cycle,
)
from billing.domain.errors import ConfigurationError, InputError
from billing.runtime import Runtime
from tests.support.airflow_env import airflow_env
from tests.support.paths import REPO, SAMPLES

# What the scheduler and a backfill would do with the parsed DAGs, printed as JSON.
TIMETABLE = """
import json
from datetime import datetime
from zoneinfo import ZoneInfo

from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import DagRunInfo

local = ZoneInfo("Europe/Bucharest")
bag = DagBag(dag_folder={folder!r})
assert not bag.import_errors, bag.import_errors
out = {{"dags": sorted(bag.dags)}}
for dag_id, dag in bag.dags.items():
    if not dag_id.startswith("invoice_cycle"):
        continue
    seen = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    if not seen.timetable.periodic:
        out[dag_id] = None
        continue
    # the run the scheduler creates after the one of 1 (or 8) October 2026
    day = 1 if dag_id == "invoice_cycle" else int(dag_id[-2:])
    last = DagRunInfo.interval(
        datetime(2026, 9, day, tzinfo=local), datetime(2026, 10, day, tzinfo=local)
    )
    # unrestricted: catchup=False would skip to the latest month before today
    following = seen.next_dagrun_info(last_automated_run_info=last, restricted=False)
    backfill = seen.iter_dagrun_infos_between(
        datetime(2026, 9, 1, tzinfo=local), datetime(2027, 3, 31, tzinfo=local)
    )
    out[dag_id] = {{
        "next": [following.data_interval.start.isoformat(), following.data_interval.end.isoformat()],
        "backfill": [
            [i.data_interval.start.isoformat(), i.data_interval.end.isoformat()] for i in backfill
        ],
    }}
print(json.dumps(out))
"""


_timetables: dict[str, dict] = {}


def airflow_timetables(tmp_path: Path, days: str) -> dict:
    # Airflow's answer depends only on the days; starting it costs seconds, so two tests asking
    # for the same days share one parse (each gets a copy of its own).
    if days not in _timetables:
        env = airflow_env(tmp_path, INVOICES_BILL_CYCLE_DAYS=days)
        done = subprocess.run(
            [sys.executable, "-c", TIMETABLE.format(folder=str(REPO / "dags" / "invoice_cycle.py"))],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        _timetables[days] = json.loads(done.stdout.strip().splitlines()[-1])
    return copy.deepcopy(_timetables[days])


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.slow
def test_the_scheduled_run_of_1_november_bills_october_across_the_dst_change(tmp_path):
    found = airflow_timetables(tmp_path, "1")
    assert found["dags"] == ["invoice_cycle"]  # only the 1st by default
    start, end = map(utc, found["invoice_cycle"]["next"])
    # Bucharest is UTC+3 on 1 October (summer time) and UTC+2 on 1 November (it ends on 25 Oct)
    assert (start, end) == (
        datetime(2026, 9, 30, 21, tzinfo=UTC),
        datetime(2026, 10, 31, 22, tzinfo=UTC),
    )
    assert (end - start).total_seconds() == (31 * 24 + 1) * 3600
    # the UTC day of the end is 31 October: reading it naively would bill the wrong cycle
    period = billed_period(start, end)
    assert (period.cycle_id, period.start, period.end) == (
        "2026-11",
        date(2026, 10, 1),
        date(2026, 10, 31),
    )

    # the committed export of cycle 2026-11 bills exactly that period, so the stage accepts it
    home = tmp_path / "home"
    settings = Settings.from_env({"INVOICES_HOME": str(home)})
    cycle_id, period = resolve_cycle(None, (start, end))
    staged = pipeline.stage(Runtime(settings), cycle_id, period)
    check_period(staged.cycle, period)


@pytest.mark.slow
def test_backfill_runs_bill_whole_months_from_local_midnight_to_midnight(tmp_path):
    found = airflow_timetables(tmp_path, "1")["invoice_cycle"]["backfill"]
    periods = [billed_period(utc(a), utc(b)) for a, b in found]
    assert [p.cycle_id for p in periods] == [
        "2026-10", "2026-11", "2026-12", "2027-01", "2027-02", "2027-03", "2027-04"
    ]  # fmt: skip
    for period in periods:
        assert period.start.day == 1 and period.end.month == period.start.month
        assert (period.end - period.start).days + 1 in (28, 30, 31)
    # summer time starts on 28 March 2027: March has 743 hours
    march = next(p for (a, b), p in zip(found, periods, strict=True) if p.cycle_id == "2027-04")
    assert (march.start, march.end) == (date(2027, 3, 1), date(2027, 3, 31))
    start, end = (utc(x) for x in found[periods.index(march)])
    assert (end - start).total_seconds() == (31 * 24 - 1) * 3600


@pytest.mark.slow
def test_each_bill_cycle_day_is_a_dag_billing_the_month_before_its_day(tmp_path):
    found = airflow_timetables(tmp_path, "1,8,15,22")
    assert {"invoice_cycle", "invoice_cycle_d08", "invoice_cycle_d15", "invoice_cycle_d22"} <= set(
        found["dags"]
    )
    start, end = map(utc, found["invoice_cycle_d08"]["next"])
    period = billed_period(start, end)
    assert (period.cycle_id, period.start, period.end) == (
        "2026-11-08",
        date(2026, 10, 8),
        date(2026, 11, 7),
    )
    twenty_second = billed_period(*map(utc, found["invoice_cycle_d22"]["next"]))
    assert (twenty_second.start, twenty_second.end) == (date(2026, 10, 22), date(2026, 11, 21))
    # the first of the month keeps its month's name
    assert billed_period(*map(utc, found["invoice_cycle"]["next"])).cycle_id == "2026-11"

    # without the 1st, invoice_cycle stays for manual runs only
    assert airflow_timetables(tmp_path, "8,22")["invoice_cycle"] is None


def test_an_export_billing_other_days_than_the_run_is_refused_until_corrected(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SAMPLES / "2026-11", source / "2026-11")
    cycle_file = source / "2026-11" / "cycle.json"
    cycle = json.loads(cycle_file.read_text())
    cycle_file.write_text(json.dumps({**cycle, "period_end": "2026-10-30"}))
    settings = Settings.from_env(
        {"INVOICES_HOME": str(tmp_path / "home"), "INVOICES_SOURCE_URL": str(source)}
    )
    interval = (datetime(2026, 9, 30, 21, tzinfo=UTC), datetime(2026, 10, 31, 22, tzinfo=UTC))
    cycle_id, period = resolve_cycle(None, interval)
    with pytest.raises(InputError, match=r"2026-11/cycle.json: .*2026-10-01\.\.2026-10-30.*"
                       r"bills 2026-10-01\.\.2026-10-31"):  # fmt: skip
        pipeline.stage(Runtime(settings), cycle_id, period)
    # refused before the cycle was registered: the corrected export runs
    cycle_file.write_text(json.dumps(cycle))
    staged = pipeline.stage(Runtime(settings), cycle_id, period)
    assert (staged.cycle.period_start, staged.cycle.period_end) == (period.start, period.end)
    assert pipeline.issue(Runtime(settings), cycle_id, "after-the-fix").issued == 301


def test_a_run_with_an_interval_refuses_a_param_naming_another_cycle():
    interval = (datetime(2026, 9, 30, 21, tzinfo=UTC), datetime(2026, 10, 31, 22, tzinfo=UTC))
    assert resolve_cycle("2026-11", interval)[0] == "2026-11"
    with pytest.raises(ConfigurationError, match="'2026-10' is not the cycle"):
        resolve_cycle("2026-10", interval)
    assert resolve_cycle(" 2026-10 ", None) == ("2026-10", None)
    with pytest.raises(ConfigurationError, match="needs the cycle_id param"):
        resolve_cycle(None, None)
    # an interval that is not local midnight to midnight is no bill cycle
    with pytest.raises(ConfigurationError, match="midnight"):
        billed_period(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def test_bill_cycle_days_are_days_every_month_has():
    assert bill_cycle_days({}) == (1,)
    assert bill_cycle_days({"INVOICES_BILL_CYCLE_DAYS": " 22, 1,8 ,15,8"}) == (1, 8, 15, 22)
    for bad, message in (("0", "not a day"), ("29", "1 to 28"), ("1;8", "such as 1,8,15,22")):
        with pytest.raises(ConfigurationError, match=message):
            bill_cycle_days({"INVOICES_BILL_CYCLE_DAYS": bad})
    assert [dag_id_for(d) for d in (1, 8)] == ["invoice_cycle", "invoice_cycle_d08"]
    assert [cycle_id_for(date(2026, 11, d)) for d in (1, 8)] == ["2026-11", "2026-11-08"]
