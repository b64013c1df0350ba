"""The invoice typeface: DejaVu Sans Condensed, shipped in `renderers/fonts/` (licence beside it).

One regular face only: a bold face's subset made the reference invoice 27.3 KB instead of
16.3 KB and cut throughput by a quarter (183 against 239 invoices/s), so emphasis is drawn with
size, colour and a fill-and-stroke text mode instead (see `renderers.blocks`).
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = Path(__file__).with_name("fonts")
FONT_FILE = FONT_DIR / "DejaVuSansCondensed.ttf"
FONT_NAME = "DejaVuSansCondensed"
FONT_DISPLAY_NAME = "DejaVu Sans Condensed"


@functools.cache
def register_font() -> TTFont:
    """Load and register the font with reportlab, once per process; the font object."""
    font = TTFont(FONT_NAME, str(FONT_FILE), asciiReadable=0)
    pdfmetrics.registerFont(font)
    return font


@functools.cache
def _code_points() -> frozenset[int]:
    return frozenset(register_font().face.charToGlyph)


def undrawable(text: str) -> str | None:
    """The first character of `text` that the font has no glyph for, or None."""
    if text.isascii() and text.isprintable():
        return None  # DejaVu covers all of printable ASCII; skips the set lookups
    code_points = _code_points()
    for char in text:
        if ord(char) not in code_points or not char.isprintable():
            return char
    return None


# What the invoice prints for a character the font cannot draw: visible, so nobody reads a
# name with a letter silently missing (the ledger keeps the real text, and so will e-Factura).
REPLACEMENT = "\ufffd"


def printable(text: str) -> str:
    """`text` as the invoice prints it: each character the font cannot draw (see `undrawable`)
    becomes REPLACEMENT, except invisible format characters (zero-width joiner and space,
    soft hyphen, ...), which are left out as a reader would not see them anyway."""
    if undrawable(text) is None:
        return text
    code_points = _code_points()
    return "".join(
        char
        if ord(char) in code_points and char.isprintable()
        else ("" if unicodedata.category(char) == "Cf" else _replacement())
        for char in text
    )


@functools.cache
def _replacement() -> str:
    return REPLACEMENT if ord(REPLACEMENT) in _code_points() else "?"


@functools.lru_cache(maxsize=4096)
def text_width(text: str, size: float) -> float:
    """Width of `text` in points at `size` (labels and headings repeat on every invoice)."""
    return pdfmetrics.stringWidth(text, FONT_NAME, size)
