"""Render benchmark: invoices per second on one core, against the floor of a bare reportlab page.

python -m renderers.bench [--seconds S]

- the reference invoice (renderers.sample_page: 1 page, 12 lines), single-threaded, and its size;
- the floor: a bare reportlab page with the same embedded font and one line of text, measured
  in the same run, in batches interleaved with the invoice's so that both see the same machine;
- the same invoice through WeasyPrint (renderers/invoice.html.j2), when `import weasyprint` works.

Rates are the median of the batches' rates: other work on the machine shows as a lower figure,
not as a wrong one.
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from billing.domain.model import IssuedInvoice, Supplier
from billing.domain.validation import normalize_text
from renderers.fonts import FONT_FILE, FONT_NAME, plain_reportlab, register_font
from renderers.formats import (
    format_amount,
    format_date,
    format_quantity,
    format_rate,
    format_unit_price,
)
from renderers.labels import LABELS
from renderers.pdf import render_invoice
from renderers.sample_page import sample_invoice
from renderers.supplier import exemption_ground, load_supplier

BATCH_SECONDS = 0.1
TEMPLATE = Path(__file__).with_name("invoice.html.j2")
GOAL_RATE = 200  # invoices per second per core
GOAL_SIZE = 30 * 1024  # bytes


def floor_page() -> bytes:
    """A bare A4 page with one line in the invoice font, saved as render_invoice saves, with
    reportlab's own subsetting (none of the invoice's caches: `plain_reportlab`)."""
    register_font()
    rl_config.useA85 = 0
    buffer = io.BytesIO()
    with plain_reportlab():
        canvas = Canvas(
            buffer, pagesize=A4, invariant=1, pageCompression=1, initialFontName=FONT_NAME
        )
        canvas.setFont(FONT_NAME, 10)
        canvas.drawString(42, 800, "Factură OR00012345 – Ștefănescu Ioana-Mădălina")
        canvas.showPage()
        canvas.save()
    return buffer.getvalue()


def median_rates(functions: list[Callable[[], bytes]], seconds: float) -> list[float]:
    """Calls per second of each function: the median over batches taken in turn."""
    for function in functions:
        function()  # warm up: font registration, caches
    batches = [_batch_size(function) for function in functions]
    rates: list[list[float]] = [[] for _ in functions]
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates[0]) < 3:
        for function, size, found in zip(functions, batches, rates, strict=True):
            start = time.perf_counter()
            for _ in range(size):
                function()
            found.append(size / (time.perf_counter() - start))
    return [statistics.median(found) for found in rates]


def _batch_size(function: Callable[[], bytes]) -> int:
    start = time.perf_counter()
    function()
    return max(1, round(BATCH_SECONDS / max(time.perf_counter() - start, 1e-6)))


def bench_rows(seconds: float = 3.0) -> list[tuple[str, str, str]]:
    """The benchmark as (label, figure, ratio or comment) rows, for this and the main bench."""
    invoice, supplier = sample_invoice(), load_supplier()

    def render() -> bytes:
        return render_invoice(invoice, supplier)

    invoice_rate, floor_rate = median_rates([render, floor_page], seconds)
    size, floor_size = len(render()), len(floor_page())
    return [
        (
            "PDF render, reference invoice (1 page, 12 lines)",
            f"{invoice_rate:,.0f} invoices/s per core",
            f"{floor_rate / invoice_rate:.1f}x the floor's time; goal >= {GOAL_RATE}/s",
        ),
        (
            "PDF size, reference invoice",
            f"{size / 1024:.1f} KB",
            f"floor {floor_size / 1024:.1f} KB; goal <= {GOAL_SIZE // 1024} KB",
        ),
        (
            "floor: bare reportlab page, same font, one line",
            f"{floor_rate:,.0f} pages/s per core",
            "(baseline)",
        ),
        _weasyprint_row(invoice, supplier, seconds, invoice_rate),
    ]


def _weasyprint_row(
    invoice: IssuedInvoice, supplier: Supplier, seconds: float, invoice_rate: float
) -> tuple[str, str, str]:
    label = "WeasyPrint, same invoice as HTML+CSS"
    try:
        import weasyprint
    except Exception as exc:  # ImportError, or OSError when Pango is missing
        return label, "unavailable", f"import weasyprint failed: {type(exc).__name__}: {exc}"

    def render() -> bytes:
        return weasyprint.HTML(string=invoice_html(invoice, supplier)).write_pdf()

    (rate,) = median_rates([render], seconds)
    figure = f"{rate:,.1f} invoices/s per core, {len(render()) / 1024:.1f} KB"
    return label, figure, f"reportlab renders {invoice_rate / rate:.0f}x faster"


def invoice_html(invoice: IssuedInvoice, supplier: Supplier) -> str:
    """The invoice as HTML+CSS with the same content and font (the WeasyPrint comparison)."""
    labels = LABELS[invoice.customer.language]
    exempt = any(line.vat_rate == 0 for line in invoice.lines)
    ground = exemption_ground(supplier, invoice.customer.language)
    counter = labels.page.format(page='" counter(page) "', pages='" counter(pages) "')
    return _html_template().render(
        invoice=invoice,
        supplier=supplier,
        labels=labels,
        font_url=FONT_FILE.as_uri(),
        page_counter=f'"{counter}"',
        exemption=labels.exemption.format(rate=format_rate(Decimal(0)), ground=ground)
        if exempt
        else "",
    )


@functools.cache
def _html_template():
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters.update(
        amount=format_amount,
        quantity=format_quantity,
        price=format_unit_price,
        rate=format_rate,
        day=format_date,
        text=normalize_text,
    )
    return environment.from_string(TEMPLATE.read_text(encoding="utf-8"))


def bench_main(
    argv: list[str] | None, doc: str, title: str, seconds: float, rows: Callable
) -> None:
    """The command line of a one-table benchmark: `--seconds` per figure, then `rows(seconds)`
    ((figure, value, ratio or comment) each) printed as a table titled `title`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=seconds, help="per measured figure")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("figure", "value", "ratio / comment"):
        table.add_column(column)
    for row in rows(args.seconds):
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def main(argv: list[str] | None = None) -> None:
    bench_main(
        argv, __doc__, "Invoice PDF rendering, one process, single-threaded", 3.0, bench_rows
    )


if __name__ == "__main__":
    main()
