"""The `invoices` command line (contract 5)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from billing.config import Settings
from billing.errors import InvoicePipelineError

app = typer.Typer(
    help="Batch invoice issuance: sample cycles, runs, the last-six view, audits.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


@app.command()
def sample(
    cycle_id: str = typer.Argument(..., help="Cycle id, YYYY-MM (the month of issue)."),
    customers: int = typer.Option(..., "--customers", min=1, help="How many customers."),
    seed: int = typer.Option(1, "--seed", help="Same seed, same customers."),
    out: Path = typer.Option(Path("."), "--out", help="Folder that receives <cycle_id>/."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
) -> None:
    """Write a realistic synthetic cycle export (contract 1), streamed with bounded memory."""
    from sample_data.generator import write_cycle

    folder = write_cycle(out, cycle_id, customers, seed=seed, fmt=fmt)
    console.print(f"wrote {folder}")


@app.command()
def stage(cycle_id: str = typer.Argument(..., help="Cycle id under INVOICES_SOURCE_URL.")) -> None:
    """Validate and partition a cycle export; print the counts and the quarantined rows."""
    from billing import pipeline

    settings = Settings.from_env()
    staged = pipeline.stage(settings, cycle_id)
    console.print_json(json.dumps({k: v for k, v in staged.as_dict().items() if k != "chunks"}))


@app.command()
def run(cycle_id: str = typer.Argument(..., help="Cycle id under INVOICES_SOURCE_URL.")) -> None:
    """Run a whole cycle in this process, without Airflow, and print its run report."""
    from billing import pipeline

    report = pipeline.run_cycle(Settings.from_env(), cycle_id)
    print_report(report)


@app.command()
def report(
    cycle_id: str = typer.Argument(..., help="Cycle id."),
    run_id: str = typer.Option("", "--run-id", help="A given run; default: the newest."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's JSON."),
) -> None:
    """Show a run report of a cycle from the archive (the newest run unless --run-id)."""
    from billing import pipeline

    found = pipeline.load_report(Settings.from_env(), cycle_id, run_id or None)
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        print_report(found)


def print_report(report: dict) -> None:
    """The run report as a table ops can read, then the path of the JSON."""
    table = Table(title=f"cycle {report['cycle_id']} - run {report['run_id']}", min_width=72)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in (
        "customers", "quarantined_customers", "quarantined_rows", "flagged_customers",
        "invoices_issued", "invoices_existing", "pdfs_archived", "pdfs_existing",
        "paper_queued", "fallbacks",
    ):  # fmt: skip
        if key in report:
            table.add_row(key.replace("_", " "), str(report[key]))
    for channel, counts in report["notices"].items():
        for state, count in counts.items():
            table.add_row(f"{channel} {state}", str(count))
    for key, amount in report["totals"].items():
        table.add_row(f"total {key} (RON)", amount)
    console.print(table)


def main() -> None:
    try:
        app()
    except InvoicePipelineError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
