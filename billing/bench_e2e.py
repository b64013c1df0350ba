"""End-to-end benchmark: one synthetic cycle of N customers through the real DAG (`make run`),
its wall time and rate per stage from the run report, the peak memory of the largest process,
and the single-core PDF floor measured in the same run, so the figure compares across machines.

    python -m billing.bench_e2e [--customers N] [--keep DIR] [--xml with|without|both]

`--xml both` runs the cycle twice, the second time without the e-Factura XML (a supplier file
with no postal address: the product's own path where no XML can be made, so none is validated
either), and adds a table comparing the two runs stage by stage.

The floor is a bare reportlab page in the invoice font (`renderers.bench.floor_page`), rendered
on one core before the run starts: the end-to-end rate divided by it says how close the whole
pipeline comes to doing nothing but drawing one page per invoice on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from billing.config import CHECKOUT, usable_cpus
from renderers.bench import floor_page, median_rates
from renderers.supplier import DEFAULT_PATH as SUPPLIER_FILE
from sample_data.generator import write_cycle

CYCLE = "2026-11"
TARGET_FLOOR_RATIO = 0.5  # issue 13: end to end at least half the single-core floor


class PeakMemory:
    """Polls a process tree and keeps the highest peak RSS (VmHWM) any one process reached."""

    def __init__(self, root: int, every: float = 0.25) -> None:
        self.root, self.every = root, every
        self.peak_mb, self.peak_name = 0.0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [psutil.Process(self.root), *psutil.Process(self.root).children(True)]
            except psutil.NoSuchProcess:
                return
            for process in tree:
                peak = _vm_hwm_mb(process.pid)
                if peak > self.peak_mb:
                    try:
                        name = " ".join(process.cmdline()[:3])
                    except psutil.Error:  # it ended meanwhile
                        name = "?"
                    self.peak_mb, self.peak_name = peak, name
            self._stop.wait(self.every)


def _vm_hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_through_dag(
    workdir: Path, customers: int, xml: bool = True
) -> tuple[dict, float, float, str]:
    """(run report, wall seconds of `make run`, peak MB of the largest process, its command);
    `xml=False` runs without the e-Factura XML."""
    source = workdir / "source"
    write_cycle(source, CYCLE, customers, seed=13)
    env = os.environ | {
        "INVOICES_HOME": str(workdir / "home"),
        "INVOICES_SOURCE_URL": str(source),
    }
    if not xml:
        supplier = json.loads(SUPPLIER_FILE.read_text(encoding="utf-8"))
        del supplier["postal_address"]
        bare = workdir / "supplier-without-address.json"
        bare.write_text(json.dumps(supplier, ensure_ascii=False), encoding="utf-8")
        env["INVOICES_SUPPLIER_FILE"] = str(bare)
    env.pop("AIRFLOW_HOME", None)
    make = ["make", "--no-print-directory", "-C", str(CHECKOUT)]
    subprocess.run([*make, "airflow-db"], env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    process = subprocess.Popen(
        [*make, "run", f"CYCLE={CYCLE}"], env=env, stdout=subprocess.PIPE, text=True
    )
    memory = PeakMemory(process.pid)
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    memory.stop()
    if process.returncode:
        sys.exit(f"make run failed:\n{output[-3000:]}")
    reports = sorted((workdir / "home" / "archive" / "reports" / CYCLE).glob("*.json"))
    report = json.loads(reports[-1].read_text())
    made = report.get("efactura_xmls", 0)
    if xml and not (made and report.get("efactura_valid") == made):
        sys.exit(f"the run made {made} XMLs, {report.get('efactura_valid')} valid: see {workdir}")
    if not xml and made:
        sys.exit(f"the run without the XML made {made} XMLs")
    return report, wall, memory.peak_mb, memory.peak_name


def comparison(with_xml: tuple[dict, float], without: tuple[dict, float]) -> Table:
    """Each stage's own (busy) seconds for the same cycle with and without the e-Factura XML:
    under `airflow dags test` the mapped tasks of the notify and validate stages interleave, so
    their spans say little; the busy seconds are each stage's own."""
    out = Table(title="The same cycle with and without the e-Factura XML (made and validated)")
    for column in ("stage", "with XML: busy s", "without: busy s", "with / without"):
        out.add_column(column, justify="left" if column == "stage" else "right")
    (report, wall), (bare, bare_wall) = with_xml, without

    def busy(run: dict, stage: str) -> float:
        own = run["throughput"].get(stage, {}).get("busy_seconds")
        return own if own is not None else run["timings"].get(stage, 0.0)

    rows = [(stage, busy(report, stage), busy(bare, stage))
            for stage in report["timings"] if stage != "total"]  # fmt: skip
    rows.append(("run (report's total)", report["timings"]["total"], bare["timings"]["total"]))
    rows.append(("make run (with Airflow start)", wall, bare_wall))
    for stage, seconds, base in rows:
        ratio = f"{seconds / base:.2f}" if base >= 0.5 else ""
        out.add_row(stage, f"{seconds:.1f}", f"{base:.1f}", ratio)
    invoices = report["invoices_issued"] + report["invoices_existing"]
    out.caption = (
        f"end to end: {invoices / wall:,.1f} invoices/s with the XML, "
        f"{invoices / bare_wall:,.1f} without"
    )
    return out


def table(report: dict, wall: float, peak_mb: float, peak_name: str, floor: float) -> Table:
    timings, throughput = report["timings"], report["throughput"]
    invoices = report["invoices_issued"] + report["invoices_existing"]
    out = Table(
        title=f"End to end through the DAG (make run): {report['customers']:,} customers",
        caption=(
            f"usable CPUs = {usable_cpus()}; single-core floor = {floor:,.0f} bare pages/s "
            f"(renderers.bench); peak RSS of the largest process: {peak_mb:,.0f} MB "
            f"({peak_name})"
        ),
    )
    # seconds: the stage's span, first part's start to last part's end; spans overlap when
    # Airflow interleaves mapped tasks of two stages. busy: its parts' own seconds added up
    # (more than the span when parts ran in parallel); per busy second is the stage's own speed.
    columns = ("stage", "seconds", "busy", "items", "per second", "per busy second", "vs floor")
    for column in columns:
        out.add_column(column, justify="left" if column == "stage" else "right")
    busy = timings.get("report", 0.0)
    for stage, seconds in timings.items():
        if stage == "total":
            continue
        figures = throughput.get(stage, {})
        own = figures.get("busy_seconds", 0.0)
        busy += own
        rate = figures.get("per_second")
        own_rate = figures["items"] / own if own and figures.get("items") else None
        out.add_row(
            stage, f"{seconds:.1f}", f"{own:.1f}" if own else "", f"{figures.get('items', '')}",
            f"{rate:,.0f}" if rate else "", f"{own_rate:,.0f}" if own_rate else "",
            f"{rate / floor:.2f}" if rate else "",
        )  # fmt: skip
    gap = timings["total"] - busy
    out.add_row("Airflow between the tasks", f"{gap:.1f}", "", "", "", "", "")
    out.add_row(
        "run (report's total)", f"{timings['total']:.1f}", "", f"{invoices:,}",
        f"{report['rate']:,.1f}", "", f"{report['rate'] / floor:.2f}",
    )  # fmt: skip
    whole = invoices / wall
    out.add_row(
        "make run (with Airflow start)", f"{wall:.1f}", "", f"{invoices:,}", f"{whole:,.1f}", "",
        f"{whole / floor:.2f} (goal >= {TARGET_FLOOR_RATIO})",
    )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    parser.add_argument("--xml", choices=("with", "without", "both"), default="with",
                        help="make and validate the e-Factura XML (default), not, or run both")  # fmt: skip
    args = parser.parse_args(argv)
    floor = median_rates([floor_page], 3.0)[0]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="invoices-bench-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 140)
    runs = {}
    try:
        for xml in {"with": (True,), "without": (False,), "both": (True, False)}[args.xml]:
            folder = workdir / ("with-xml" if xml else "without-xml")
            report, wall, peak_mb, peak_name = run_through_dag(folder, args.customers, xml)
            table_ = table(report, wall, peak_mb, peak_name, floor)
            table_.title += "" if xml else ", without the e-Factura XML"
            console.print(table_)
            runs[xml] = (report, wall)
            if args.keep is None:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if len(runs) == 2:
        console.print(comparison(runs[True], runs[False]))


if __name__ == "__main__":
    main()
