"""The `invoices` command line (contract 5)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from billing.domain.errors import InvoicePipelineError
from billing.domain.moments import as_utc

app = typer.Typer(
    help="Batch invoice issuance: sample cycles, runs, the last-six view, audits.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def _runtime():
    """This process's resources, from the environment (contract 3); built once per command."""
    from billing.config import Settings
    from billing.runtime import Runtime

    return Runtime(Settings.from_env())


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

    staged = pipeline.stage(_runtime(), cycle_id)
    console.print_json(json.dumps({k: v for k, v in staged.as_dict().items() if k != "chunks"}))


@app.command()
def run(cycle_id: str = typer.Argument(..., help="Cycle id under INVOICES_SOURCE_URL.")) -> None:
    """Run a whole cycle in this process, without Airflow, with a progress bar per stage (on
    stderr), and print its run report."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from billing import pipeline

    columns = (
        TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=err, transient=False) as bars:
        report = pipeline.run_cycle(
            _runtime(), cycle_id, progress_for=lambda stage: _Bar(bars, stage)
        )
    print_report(report)


class _Bar:
    """One stage's rich bar, shown once the stage announces its work."""

    def __init__(self, bars, stage: str) -> None:
        self.bars, self.stage, self.task = bars, stage, None

    def begin(self, total: int) -> None:
        if self.task is None:
            self.task = self.bars.add_task(self.stage, total=total)
        else:
            self.bars.update(self.task, total=self.bars.tasks[self.task].total + total)

    def advance(self, done: int) -> None:
        if self.task is not None:
            self.bars.advance(self.task, done)


@app.command()
def report(
    cycle_id: str = typer.Argument(..., help="Cycle id."),
    run_id: str = typer.Option("", "--run-id", help="A given run; default: the newest."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's JSON."),
) -> None:
    """Show a run report of a cycle from the archive (the newest run unless --run-id)."""
    from billing import pipeline

    found = pipeline.load_report(_runtime(), cycle_id, run_id or None)
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        print_report(found)


@app.command()
def view(
    customer_id: str = typer.Argument(..., help="The customer's id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (contract 4)."),
) -> None:
    """A customer's last six invoices, newest first, with download links."""
    from billing import pipeline

    found = pipeline.last_invoices(_runtime(), customer_id)
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"last invoices of {customer_id}")
    for column in ("number", "cycle", "issued", "due", "total", "sha256", "download"):
        table.add_column(column, overflow="fold")
    for item in found:
        table.add_row(
            item["number"], item["cycle_id"], item["issue_date"], item["due_date"],
            f"{item['total']} {item['currency']}", item["sha256"][:16] + "...", item["url"],
        )  # fmt: skip
    console.print(table if found else f"no archived invoice for {customer_id}")


audit = typer.Typer(
    help="Auditor tools: verify and download a cycle's archive.", no_args_is_help=True
)
app.add_typer(audit, name="audit")


@audit.command("verify")
def audit_verify(cycle_id: str = typer.Argument(..., help="Cycle id.")) -> None:
    """Re-read every object of the cycle and check it against the manifest, the manifest chain
    and the ledger, and that the series has no gaps. Exit 0 only when all agree."""
    from billing import pipeline

    problems = pipeline.verify_archive(_runtime(), cycle_id)
    for problem in problems:
        typer.echo(problem)
    if problems:
        err.print(f"cycle {cycle_id}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    typer.echo(f"cycle {cycle_id}: archive, manifest chain and ledger agree")


@audit.command("download")
def audit_download(
    cycle_id: str = typer.Argument(..., help="Cycle id."),
    to: Path = typer.Option(..., "--to", help="Folder that receives the PDFs and the manifest."),
) -> None:
    """Download a cycle's PDFs and manifest, verifying each file against the manifest."""
    from rich.progress import Progress

    from billing import pipeline

    runtime = _runtime()
    with Progress(console=err) as progress:
        task = progress.add_task(
            f"cycle {cycle_id}", total=pipeline.manifest_size(runtime, cycle_id)
        )
        problems = pipeline.download_archive(
            runtime, cycle_id, to, progress=lambda n: progress.advance(task, n)
        )
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"cycle {cycle_id}: downloaded to {to} and verified")


archive_app = typer.Typer(help="Archive maintenance.", no_args_is_help=True)
app.add_typer(archive_app, name="archive")


@archive_app.command("lifecycle")
def archive_lifecycle(
    days: int = typer.Option(200, "--days", min=30, help="Age after which invoices go colder."),
    storage_class: str = typer.Option("STANDARD_IA", "--storage-class"),
) -> None:
    """Move archived invoices older than the six-invoice view window to a colder storage class
    (an S3 lifecycle rule on invoices/; the objects stay locked)."""
    from billing import pipeline

    runtime = _runtime()
    if not runtime.settings.archive_url.startswith("s3://"):
        typer.echo(
            f"{runtime.settings.archive_url} is a local folder: there is no colder storage class"
        )
        raise typer.Exit(1)
    rule = pipeline.archive_lifecycle(runtime, days, storage_class)
    typer.echo(json.dumps(rule, indent=2, default=str))


notices_app = typer.Typer(help="The notice outbox of a cycle.", no_args_is_help=True)
app.add_typer(notices_app, name="notices")


@notices_app.command("resend")
def notices_resend(
    cycle_id: str = typer.Argument(..., help="Cycle id."),
    channel: list[str] = typer.Option(["email", "sms"], "--channel", help="email and/or sms."),
) -> None:
    """Send the cycle's failed notices again (sent ones are never sent twice)."""
    from billing import pipeline

    unknown = set(channel) - set(pipeline.CHANNELS)
    if unknown:
        raise typer.BadParameter(f"unknown channel(s): {', '.join(sorted(unknown))}")
    results = pipeline.resend_failed(
        _runtime(), cycle_id, pipeline.new_run_id("resend"), tuple(channel)
    )
    for name, result in results.items():
        typer.echo(f"{name}: sent {result.sent}, failed {result.failed}, pending {result.pending}")


preferences_app = typer.Typer(
    help="Preference changes customers made on the page or by phone.", no_args_is_help=True
)
app.add_typer(preferences_app, name="preferences")


def _moment(value: str) -> datetime:
    """--since as an aware time: an ISO 8601 date (its midnight) or date and time; a time
    without a zone is UTC."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or date and time, e.g. 2026-11-05 or "
            "2026-11-05T08:30:00Z"
        ) from None
    return as_utc(moment)


@preferences_app.command("export")
def preferences_export(
    since: datetime | None = typer.Option(
        None,
        "--since",
        parser=_moment,
        metavar="T",
        help="Only changes made at or after T: an ISO 8601 date or date and time (UTC unless "
        "it names its zone).",
    ),
    out: Path = typer.Option(
        None, "--out", dir_okay=False, help="Write the CSV to this file; default stdout."
    ),
) -> None:
    """The preference changes customers made (delivery, notices, mailing address), oldest first,
    as CSV for the billing system to import; each row holds the whole preference after the
    change and its state (open, applied, reflected, superseded)."""
    from billing import pipeline

    if out is not None and not out.parent.is_dir():
        raise typer.BadParameter(f"folder {out.parent} does not exist", param_hint="'--out'")
    lines = pipeline.export_preference_changes(_runtime(), since)
    if out is None:
        for line in lines:
            typer.echo(line, nl=False)
        return
    # written beside the target and renamed into place: a failed export leaves no partial file
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            count = -1  # the header is no change
            for line in lines:
                file.write(line)
                count += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    err.print(f"{count} change(s) written to {out}", highlight=False)


efactura_app = typer.Typer(
    help="RO e-Factura: the XMLs of the invoices and where they stand with ANAF.",
    no_args_is_help=True,
)
app.add_typer(efactura_app, name="efactura")


@efactura_app.command("validate")
def efactura_validate(
    cycle_id: str = typer.Argument(None, help="Cycle id; every cycle when left out."),
) -> None:
    """Check the archived XMLs not validated yet (UBL 2.1 schema, EN 16931, CIUS-RO); an
    invalid one is kept from upload. Exit 1 when any XML of the cycle is invalid (deadlines
    are listed, and fail `status`)."""
    from billing import pipeline

    runtime = _runtime()
    result = pipeline.validate_efactura(runtime, cycle_id)
    typer.echo(f"{result.valid} valid, {result.invalid} invalid")
    _print_efactura_status(pipeline.efactura_status(runtime, cycle_id), deadlines_fail=False)


@efactura_app.command("submit")
def efactura_submit(
    cycle_id: str = typer.Argument(None, help="Cycle id; every cycle when left out."),
) -> None:
    """Validate the XMLs not validated yet, then upload every valid one not uploaded yet to
    ANAF (INVOICES_EFACTURA_URL; unset: nothing is uploaded). An invalid XML is never sent."""
    from billing import pipeline

    runtime = _runtime()
    checked = pipeline.validate_efactura(runtime, cycle_id)
    typer.echo(f"validated: {checked.valid} valid, {checked.invalid} invalid")
    if not runtime.settings.efactura_url:
        typer.echo("INVOICES_EFACTURA_URL is unset: nothing uploaded")
        return
    sent = pipeline.submit_efactura(runtime, cycle_id)
    typer.echo(
        f"uploaded {sent.uploaded}, refused {sent.refused}, unanswered {sent.unanswered} "
        "(looked for by the next sync)"
        + (" - stopped at ANAF's rate limit: run it again later" if sent.rate_limited else "")
    )


@efactura_app.command("sync")
def efactura_sync() -> None:
    """Poll ANAF for every uploaded XML, archive its answer (the signed invoice or the errors)
    and find unanswered uploads in ANAF's message list."""
    from billing import pipeline

    runtime = _runtime()
    if not runtime.settings.efactura_url:
        typer.echo("INVOICES_EFACTURA_URL is unset: nothing to sync")
        return
    done = pipeline.sync_efactura(runtime)
    typer.echo(
        f"accepted {done.accepted}, rejected {done.rejected}, still processing {done.processing}, "
        f"found in the message list {done.reconciled}, to upload again {done.released}"
        + (" - stopped at ANAF's rate limit: run it again later" if done.rate_limited else "")
    )


@efactura_app.command("status")
def efactura_status(
    cycle_id: str = typer.Argument(None, help="Cycle id; every cycle when left out."),
) -> None:
    """The XMLs by state, the invalid ones with the rules they break, and the invoices not
    accepted by ANAF a working day or less before their deadline (5 working days after issue,
    Romanian public holidays excluded) or past it. Exit 1 when any is invalid or late."""
    from billing import pipeline

    _print_efactura_status(pipeline.efactura_status(_runtime(), cycle_id))


def _print_efactura_status(status: dict, deadlines_fail: bool = True) -> None:
    table = Table(title="e-Factura")
    table.add_column("state")
    table.add_column("XMLs", justify="right")
    for state, count in sorted(status["states"].items()):
        table.add_row(state, f"{count:,}")
    console.print(table)
    for invalid in status["invalid"]:
        typer.echo(f"{invalid['number']} ({invalid['cycle_id']}): invalid")
        for rule in invalid["rules"]:
            typer.echo(f"  {rule}")
    for late in status.get("deadlines", ()):
        left = late["working_days_left"]
        when = "past its deadline" if left < 0 else f"{left} working day(s) to the deadline"
        states = ", ".join(f"{n:,} {state}" for state, n in sorted(late["states"].items()))
        typer.echo(
            f"issued {late['issue_date']}, due at ANAF by {late['deadline']}: "
            f"{late['invoices']:,} invoice(s) not accepted, {when} ({states}; first: "
            f"{', '.join(late['first'])})"
        )
    if status["states"].get("invalid") or (deadlines_fail and status.get("deadlines")):
        raise typer.Exit(1)


def print_report(report: dict) -> None:
    """The run report as the plain-text tables the finalize task logs (billing.stages.report_text)."""
    from billing.stages.report_text import format_report

    typer.echo(format_report(report))


def main() -> None:
    try:
        app()
    except InvoicePipelineError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
