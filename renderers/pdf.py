"""The invoice PDF (template v2): A4, Romanian or English, drawn on reportlab's canvas.

`render_invoice` works in three steps:

1. compose: every text is normalised (cedilla ş ţ to comma-below ș ț, bidirectional controls
   removed), what the font cannot draw is replaced by U+FFFD, formatted (1.234,56; dd.mm.yyyy)
   and wrapped into `Block`s of drawing operations placed relative to each block's top edge,
   so every block knows its height before drawing;
2. paginate: rows go onto pages by height, so "Pagina X din Y" is known before anything is
   drawn; the closing part (VAT summary, totals, payment box) goes on the last page only;
3. draw: per page, the shapes, then all text in one text object (fewer operators, smaller files).

Text goes through a text object's `textLine`, which never interprets markup: a customer named
`<b>x</b>` is printed as typed, and nothing is ever fetched. The output is byte-identical for
the same invoice (reportlab's invariant mode, metadata from the invoice only). reportlab's font
state and settings are process-wide, so renders in one process are serialised by a lock:
scale out with processes.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from billing.domain.errors import RenderError
from billing.domain.model import Customer, InvoiceLine, IssuedInvoice, Supplier
from billing.domain.validation import normalize_text
from renderers.blocks import Block, Color, Style, draw_page, paginate
from renderers.fonts import FONT_NAME, printable, register_font
from renderers.formats import (
    format_amount,
    format_date,
    format_quantity,
    format_rate,
    format_unit_price,
)
from renderers.labels import LABELS, Labels
from renderers.supplier import exemption_ground

TEMPLATE_VERSION = "v2"

__all__ = ["TEMPLATE_VERSION", "RenderError", "render_invoice"]


INK: Color = (0.11, 0.13, 0.17)
MUTED: Color = (0.39, 0.43, 0.49)
ACCENT: Color = (0.08, 0.24, 0.43)
RULE: Color = (0.80, 0.83, 0.87)
ZEBRA: Color = (0.955, 0.965, 0.977)
BAND: Color = (0.905, 0.93, 0.957)
WHITE: Color = (1.0, 1.0, 1.0)


TITLE = Style(20, ACCENT, bold=True)
SUPPLIER_NAME = Style(13, ACCENT, bold=True)
SUPPLIER_NAME_SMALL = Style(11, ACCENT, bold=True)
CUSTOMER_NAME = Style(11, INK, bold=True)
SUBTITLE = Style(9.5, INK)
BODY = Style(8, INK)
BODY_BOLD = Style(8, INK, bold=True)
LABEL = Style(7.5, MUTED)
HEADING = Style(7, ACCENT, bold=True)
COLUMN = Style(7, ACCENT, bold=True)
CELL = Style(8, INK)
CELL_NOTE = Style(7, MUTED)
NOTE = Style(7.5, INK)
FOOTER = Style(6.5, MUTED)
TOTAL_DUE = Style(10, WHITE, bold=True)

PAGE_WIDTH, PAGE_HEIGHT = A4
LEFT = 42.0
RIGHT = PAGE_WIDTH - 42.0
WIDTH = RIGHT - LEFT
TOP = PAGE_HEIGHT - 40.0
BOTTOM = 50.0  # lowest y of any block but the footer
FOOTER_TOP = 40.0
GAP = 16.0
BOX_LEFT = 340.0  # the invoice box (page 1) and the VAT summary / totals (last page)
ADDRESS_LEFT = 310.0  # the customer's address column and the payment box's second column

# Table columns: (left edge, right edge); numbers are right-aligned, the description wraps.
COL_NO, COL_DESCRIPTION, COL_QUANTITY, COL_UNIT_PRICE, COL_NET, COL_RATE = (
    (LEFT, 64.0),
    (64.0, 300.0),
    (300.0, 350.0),
    (350.0, 428.0),
    (428.0, 502.0),
    (502.0, RIGHT),
)
CELL_PAD = 5.0
ROW_PAD = 4.5
ROW_LEADING = 10.0
DESCRIPTION_WIDTH = COL_DESCRIPTION[1] - COL_DESCRIPTION[0] - 2 * CELL_PAD
MAX_DESCRIPTION_LINES = 15
MAX_FIELD_LINES = 3
MAX_NAME_LINES = 4  # about 150 characters of a company name
CONTINUED_HEIGHT = 18.0

_LOCK = threading.Lock()
# Blocks that are the same for every invoice of one supplier and language are built once;
# nothing mutates a block after it is built.
_shared = functools.lru_cache(maxsize=16)


def render_invoice(invoice: IssuedInvoice, supplier: Supplier) -> bytes:
    """The invoice as PDF bytes: the same invoice always gives the same bytes.

    A character the font cannot draw prints as a visible replacement (U+FFFD); the ledger and
    the e-Factura XML keep the text as it is. Raises `RenderError` naming the field when a text
    is too long to print, or the language or currency is not one the template knows.
    """
    labels = LABELS.get(invoice.customer.language)
    if labels is None:
        raise RenderError(f"customer language: {invoice.customer.language!r} is not ro or en")
    if invoice.currency != "RON":
        raise RenderError(f"currency: {invoice.currency!r} is not supported (amounts print in lei)")
    with _LOCK:
        register_font()
        # reportlab wraps Flate streams in ASCII85 by default, which only makes them bigger and
        # slower to write; set per call so that no other reportlab user can change the bytes.
        rl_config.useA85 = 0
        return _draw(_compose(invoice, supplier, labels))


@dataclass(frozen=True, slots=True)
class _Document:
    labels: Labels
    metadata: tuple[str, str, str]  # title, author, subject
    first_header: Block  # supplier, invoice box and customer panel
    next_header: Block  # supplier, invoice number and customer name on later pages
    table_header: Block
    rows: tuple[Block, ...]
    closing: Block  # exemption ground, VAT summary, totals
    payment: Block


# --------------------------------------------------------------------------------- compose


def _clean(value: str) -> str:
    """`value` normalised for print, with what the font cannot draw replaced (see `printable`):
    staging has flagged such a text, and the invoice is issued all the same."""
    return printable(normalize_text(value))


def _wrap(text: str, field: str, style: Style, width: float, max_lines: int) -> list[str]:
    """`text` split into lines no wider than `width`, breaking words only when one is wider."""
    if stringWidth(text, FONT_NAME, style.size) <= width:
        return [text] if text else []
    lines: list[str] = []
    for line in simpleSplit(text, FONT_NAME, style.size, width):
        if stringWidth(line, FONT_NAME, style.size) <= width:
            lines.append(line)
        else:
            lines.extend(_break_word(line, style.size, width))
    if len(lines) > max_lines:
        raise RenderError(
            f"{field}: too long to print ({len(lines)} lines, at most {max_lines}): {text[:60]!r}…"
        )
    return lines


def _break_word(text: str, size: float, width: float) -> list[str]:
    lines, current = [], ""
    for char in text:
        if current and stringWidth(current + char, FONT_NAME, size) > width:
            lines.append(current)
            current = ""
        current += char
    return [*lines, current]


def _compose(invoice: IssuedInvoice, supplier: Supplier, labels: Labels) -> _Document:
    customer_name = _clean(invoice.customer.name)
    supplier_name = _clean(supplier.name)
    supplier_block = _supplier_block(supplier, supplier_name, labels)
    invoice_box = _invoice_box(invoice, labels)
    customer_panel = _customer_panel(invoice.customer, customer_name, labels)
    first = Block()
    first.place(supplier_block, 0.0)
    first.place(invoice_box, 0.0)
    first.height = max(supplier_block.height, invoice_box.height) + GAP
    first.place(customer_panel, first.height)
    first.height += customer_panel.height
    period = _period(invoice.period_start, invoice.period_end)
    return _Document(
        labels=labels,
        metadata=(
            f"{labels.title} {_clean(invoice.number)}",
            supplier_name,
            f"{customer_name}, {period}",
        ),
        first_header=first,
        next_header=_next_header(invoice, supplier, supplier_name, customer_name, labels),
        table_header=_table_header(labels),
        rows=tuple(
            _row(line, index % 2 == 1, invoice, labels) for index, line in enumerate(invoice.lines)
        ),
        closing=_closing(invoice, supplier, labels),
        payment=_payment(invoice, supplier, supplier_name, labels),
    )


@_shared
def _supplier_block(supplier: Supplier, name: str, labels: Labels) -> Block:
    width = BOX_LEFT - LEFT - GAP
    block = Block()
    names = _wrap(name, "supplier name", SUPPLIER_NAME, width, 2)
    dy = block.lines(LEFT, 12.0, names, SUPPLIER_NAME, 15.0) + 1.0
    address = _clean(supplier.address)
    capital = _clean(supplier.share_capital)
    bank = f"{labels.bank}: {_clean(supplier.bank)}"
    contact = (
        _clean(value)
        for value in (
            supplier.phone and f"{labels.phone} {supplier.phone}",
            supplier.email,
            supplier.website,
        )
        if value
    )
    details = [
        *_pack(_registration(supplier), "supplier CUI", BODY, width),
        *_wrap(address, "supplier address", BODY, width, MAX_FIELD_LINES),
        f"{labels.share_capital}: {capital}",
        f"IBAN: {_clean(supplier.iban)}",
        *_wrap(bank, "supplier bank", BODY, width, 2),
        *_pack(contact, "supplier contact", BODY, width),
    ]
    block.height = block.lines(LEFT, dy, details, BODY, 10.5) - 7.0
    return block


def _registration(supplier: Supplier) -> tuple[str, str]:
    cui = _clean(supplier.cui)
    return f"CUI: {cui}", f"Reg. Com.: {_clean(supplier.trade_register)}"


def _pack(items: Iterable[str], field: str, style: Style, width: float) -> list[str]:
    """Items joined with " · " on as few lines as fit; an item never splits unless too wide."""
    lines: list[str] = []
    for item in items:
        joined = f"{lines[-1]}  ·  {item}" if lines else item
        if lines and stringWidth(joined, FONT_NAME, style.size) <= width:
            lines[-1] = joined
        else:
            lines += _wrap(item, field, style, width, 2)
    return lines


def _invoice_box(invoice: IssuedInvoice, labels: Labels) -> Block:
    block = Block()
    series = _clean(invoice.series)
    number = _clean(invoice.number)
    sequence = number.removeprefix(series)
    block.text(RIGHT, 16.0, labels.title, TITLE, align="right")
    series_number = labels.series_number.format(series=series, seq=sequence)
    block.text(RIGHT, 32.0, series_number, SUBTITLE, align="right")
    rows = (
        (labels.number, number),
        (labels.issue_date, format_date(invoice.issue_date)),
        (labels.period, _period(invoice.period_start, invoice.period_end)),
        (labels.due_date, format_date(invoice.due_date)),
    )
    top, row_height = 42.0, 14.0
    block.height = top + row_height * len(rows) + 8.0
    block.fill(BOX_LEFT, top, RIGHT - BOX_LEFT, block.height - top, BAND)
    for index, (label, value) in enumerate(rows):
        baseline = top + 14.0 + index * row_height
        block.text(BOX_LEFT + 8.0, baseline, label, LABEL)
        block.text(RIGHT - 8.0, baseline, value, BODY_BOLD, align="right")
    return block


def _customer_panel(customer: Customer, name: str, labels: Labels) -> Block:
    block = Block()
    left_width = ADDRESS_LEFT - LEFT - 2 * GAP
    x = LEFT + 10.0
    block.text(x, 15.0, labels.customer, HEADING)
    names = _wrap(name, "customer name", CUSTOMER_NAME, left_width, MAX_NAME_LINES)
    dy = block.lines(x, 31.0, names, CUSTOMER_NAME, 13.0) + 1.0
    identity = []
    if customer.tax_id:
        tax_id = _clean(customer.tax_id)
        identity.append(f"{'CNP' if len(tax_id) == 13 and tax_id.isdigit() else 'CUI'}: {tax_id}")
    identity.append(f"{labels.customer_id}: {_clean(customer.customer_id)}")
    left_end = block.lines(x, dy, identity, BODY, 11.0)
    right_end = block.lines(ADDRESS_LEFT, 31.0, _address_lines(customer, labels), BODY, 11.0)
    block.height = max(left_end, right_end) + 2.0
    block.frame(LEFT, 0.0, WIDTH, block.height, RULE)
    return block


def _address_lines(customer: Customer, labels: Labels) -> list[str]:
    address = customer.address
    width = RIGHT - ADDRESS_LEFT - 10.0
    street = _clean(address.street)
    postal_code = _clean(address.postal_code)
    city = _clean(address.city)
    county = _clean(address.county)
    country = labels.country_ro if address.country == "RO" else _clean(address.country)
    lines = _wrap(street, "customer street", BODY, width, MAX_FIELD_LINES)
    lines += _wrap(f"{postal_code} {city}".strip(), "customer city", BODY, width, 2)
    lines += _wrap(", ".join(filter(None, (county, country))), "customer county", BODY, width, 2)
    return lines


def _next_header(
    invoice: IssuedInvoice,
    supplier: Supplier,
    supplier_name: str,
    customer_name: str,
    labels: Labels,
) -> Block:
    block = Block()
    half = (WIDTH - GAP) / 2
    names = _wrap(supplier_name, "supplier name", SUPPLIER_NAME_SMALL, half, 2)
    left_end = block.lines(LEFT, 10.0, names, SUPPLIER_NAME_SMALL, 13.0)
    registration = _pack(_registration(supplier), "supplier CUI", LABEL, half)
    left_end = block.lines(LEFT, left_end, registration, LABEL, 10.0)
    number = _clean(invoice.number)
    block.text(RIGHT, 10.0, labels.continuation.format(number=number), BODY_BOLD, align="right")
    names = _wrap(customer_name, "customer name", BODY, half, MAX_NAME_LINES)
    right_end = block.lines(RIGHT, 23.0, names, BODY, 10.0, align="right")
    block.height = max(left_end, right_end)
    block.rule(LEFT, RIGHT, block.height - 4.0, RULE)
    return block


_COLUMNS = (COL_NO, COL_DESCRIPTION, COL_QUANTITY, COL_UNIT_PRICE, COL_NET, COL_RATE)


@_shared
def _table_header(labels: Labels) -> Block:
    block = Block()
    block.height = 26.0
    block.fill(LEFT, 0.0, WIDTH, block.height, BAND)
    titles = (
        labels.col_no,
        labels.col_description,
        labels.col_quantity,
        labels.col_unit_price,
        labels.col_net,
        labels.col_rate,
    )
    for (left, right), title in zip(_COLUMNS, titles, strict=True):
        first = 11.0 if len(title) == 2 else 16.0
        if (left, right) == COL_DESCRIPTION:
            block.lines(left + CELL_PAD, first, title, COLUMN, 8.5)
        else:
            block.lines(right - CELL_PAD, first, title, COLUMN, 8.5, align="right")
    return block


def _row(line: InvoiceLine, shaded: bool, invoice: IssuedInvoice, labels: Labels) -> Block:
    field = f"line {line.line_no} description"
    description = _clean(line.description)
    wrapped = _wrap(description, field, CELL, DESCRIPTION_WIDTH, MAX_DESCRIPTION_LINES)
    start = line.service_start or invoice.period_start
    end = line.service_end or invoice.period_end
    own_period = (start, end) != (invoice.period_start, invoice.period_end)
    block = Block()
    block.height = 2 * ROW_PAD + ROW_LEADING * len(wrapped) + (9.0 if own_period else 0.0)
    if shaded:
        block.fill(LEFT, 0.0, WIDTH, block.height, ZEBRA)
    block.rule(LEFT, RIGHT, block.height, RULE)
    baseline = ROW_PAD + 7.5
    block.text(COL_NO[1] - CELL_PAD, baseline, str(line.line_no), CELL, align="right")
    after = block.lines(COL_DESCRIPTION[0] + CELL_PAD, baseline, wrapped, CELL, ROW_LEADING)
    if own_period:
        period = labels.line_period.format(start=format_date(start), end=format_date(end))
        block.text(COL_DESCRIPTION[0] + CELL_PAD, after - 1.0, period, CELL_NOTE)
    cells = (
        (COL_QUANTITY, format_quantity(line.quantity)),
        (COL_UNIT_PRICE, format_unit_price(line.unit_price)),
        (COL_NET, format_amount(line.net)),
        (COL_RATE, format_rate(line.vat_rate)),
    )
    for (_, right), value in cells:
        block.text(right - CELL_PAD, baseline, value, CELL, align="right")
    return block


def _closing(invoice: IssuedInvoice, supplier: Supplier, labels: Labels) -> Block:
    block = Block()
    dy = 0.0
    if any(line.vat_rate == 0 for line in invoice.lines):
        ground = _clean(exemption_ground(supplier, invoice.customer.language))
        note = labels.exemption.format(rate=format_rate(Decimal(0)), ground=ground)
        lines = _wrap(note, "exemption ground", NOTE, WIDTH, MAX_FIELD_LINES)
        dy = block.lines(LEFT, 12.0, lines, NOTE, 9.5) - 9.5
    dy += 14.0
    base_right, vat_right = 460.0, RIGHT - 8.0
    block.fill(BOX_LEFT, dy, RIGHT - BOX_LEFT, 16.0, BAND)
    block.text(BOX_LEFT + 8.0, dy + 11.0, labels.vat_rate, COLUMN)
    block.text(base_right, dy + 11.0, labels.vat_base, COLUMN, align="right")
    block.text(vat_right, dy + 11.0, labels.vat_amount, COLUMN, align="right")
    dy += 16.0
    for vat in invoice.vat:
        block.text(BOX_LEFT + 8.0, dy + 11.0, format_rate(vat.rate), BODY)
        block.text(base_right, dy + 11.0, format_amount(vat.base), BODY, align="right")
        block.text(vat_right, dy + 11.0, format_amount(vat.vat), BODY, align="right")
        dy += 15.0
        block.rule(BOX_LEFT, RIGHT, dy, RULE)
    dy += 8.0
    for label, amount in (
        (labels.total_net, invoice.net_total),
        (labels.total_vat, invoice.vat_total),
    ):
        block.text(BOX_LEFT + 8.0, dy + 11.0, label, BODY)
        value = f"{format_amount(amount)} {labels.currency}"
        block.text(vat_right, dy + 11.0, value, BODY_BOLD, align="right")
        dy += 15.0
    dy += 4.0
    block.fill(BOX_LEFT, dy, RIGHT - BOX_LEFT, 22.0, ACCENT)
    block.text(BOX_LEFT + 8.0, dy + 15.0, labels.total_due, TOTAL_DUE)
    total = f"{format_amount(invoice.total)} {labels.currency}"
    block.text(vat_right, dy + 15.0, total, TOTAL_DUE, align="right")
    block.height = dy + 22.0
    return block


def _payment(
    invoice: IssuedInvoice, supplier: Supplier, supplier_name: str, labels: Labels
) -> Block:
    block = Block()
    x1, x2 = LEFT + 10.0, ADDRESS_LEFT
    value1, value2 = x1 + 62.0, x2 + 86.0
    block.text(x1, 15.0, labels.payment, HEADING)
    width = x2 - value1 - GAP
    payee = _wrap(supplier_name, "supplier name", BODY, width, 2)
    bank = _wrap(_clean(supplier.bank), "supplier bank", BODY, width, 2)
    left = (
        (labels.payee, payee, BODY),
        ("IBAN", [_clean(supplier.iban)], BODY_BOLD),
        (labels.bank, bank, BODY),
    )
    right = (
        (labels.reference, [_clean(invoice.number)], BODY_BOLD),
        (labels.amount, [f"{format_amount(invoice.total)} {labels.currency}"], BODY_BOLD),
        (labels.due_date, [format_date(invoice.due_date)], BODY_BOLD),
    )
    left_end = _labelled(block, x1, value1, 30.0, left)
    right_end = _labelled(block, x2, value2, 30.0, right)
    block.height = max(left_end, right_end) + 3.0
    block.frame(LEFT, 0.0, WIDTH, block.height, ACCENT)
    return block


def _labelled(
    block: Block,
    x: float,
    value_x: float,
    dy: float,
    rows: Sequence[tuple[str, Sequence[str], Style]],
) -> float:
    for label, values, style in rows:
        block.text(x, dy, label, LABEL)
        dy = block.lines(value_x, dy, values, style, 11.0)
    return dy


def _period(start: date, end: date) -> str:
    return f"{format_date(start)} – {format_date(end)}"


# ------------------------------------------------------------------------------------ draw


def _draw(document: _Document) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1, pageCompression=1, initialFontName=FONT_NAME)
    title, author, subject = document.metadata
    canvas.setTitle(title)
    canvas.setAuthor(author)
    canvas.setSubject(subject)
    canvas.setCreator(f"invoice-pipeline renderers.pdf {TEMPLATE_VERSION}")
    for placements in _layout(document):
        draw_page(canvas, placements)
    canvas.save()
    return buffer.getvalue()


def _layout(document: _Document) -> list[list[tuple[Block, float]]]:
    """Each page's blocks with the y of their top edge."""
    table_top = (TOP - document.first_header.height - GAP, TOP - document.next_header.height - GAP)
    header = document.table_header.height
    pages = paginate(
        [row.height for row in document.rows],
        first=table_top[0] - header - BOTTOM,
        others=table_top[1] - header - BOTTOM,
        continued=CONTINUED_HEIGHT,
        closing=document.closing.height + GAP + document.payment.height,
    )
    layout = []
    for number, rows in enumerate(pages, start=1):
        y = table_top[number > 1]
        placements = [
            (document.next_header if number > 1 else document.first_header, TOP),
            (document.table_header, y),
        ]
        y -= header
        for index in rows:
            placements.append((document.rows[index], y))
            y -= document.rows[index].height
        if number == len(pages):
            placements.append((document.closing, y))
            placements.append((document.payment, BOTTOM + document.payment.height))
        else:
            placements.append((_continued(document.labels), y))
        placements.append((_footer(document.labels, number, len(pages)), FOOTER_TOP))
        layout.append(placements)
    return layout


@_shared
def _continued(labels: Labels) -> Block:
    block = Block()
    block.text(RIGHT, 12.0, labels.continued, LABEL, align="right")
    return block


@_shared
def _footer(labels: Labels, page: int, pages: int) -> Block:
    block = Block()
    block.rule(LEFT, RIGHT, 0.0, RULE)
    block.text(LEFT, 10.0, labels.no_signature, FOOTER)
    block.text(RIGHT, 10.0, labels.page.format(page=page, pages=pages), FOOTER, align="right")
    return block
