"""The invoice typeface: DejaVu Sans Condensed, shipped in `renderers/fonts/` (licence beside it).

One regular face only: a bold face's subset made the reference invoice 27.3 KB instead of
16.3 KB and cut throughput by a quarter (183 against 239 invoices/s), so emphasis is drawn with
size, colour and a fill-and-stroke text mode instead (see `renderers.blocks`).

Every document's font subset starts with the same characters in the same order (`common()`:
printable ASCII, the Romanian letters and the few signs the labels use; `seed`), so that

- a text made only of those characters has the same character codes in every document:
  `renderers.blocks` encodes it once per process, not once per document;
- a document that uses no other character embeds the same subset as the last one: the subset
  font program and its compressed stream are built once per process (`register_font` wraps
  reportlab's `makeSubset` and its Flate filter with small caches; the bytes are the ones
  reportlab would write).

A name with another character (ö, é, ł) extends that document's subset as reportlab always did.
"""

from __future__ import annotations

import contextlib
import functools
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from reportlab import rl_config
from reportlab.pdfbase import pdfdoc, pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = Path(__file__).with_name("fonts")
FONT_FILE = FONT_DIR / "DejaVuSansCondensed.ttf"
FONT_NAME = "DejaVuSansCondensed"
FONT_DISPLAY_NAME = "DejaVu Sans Condensed"


ROMANIAN = "ĂÂÎȘȚăâîșț"
# Characters the labels, formats and notes of the template print, beyond ASCII and ROMANIAN.
SIGNS = "–·…„”«»’€°§"
SUBSET_CACHE = 32  # distinct subsets kept per process: the common one, and a few of names'


@functools.cache
def register_font() -> TTFont:
    """Load and register the font with reportlab, once per process; the font object."""
    font = TTFont(FONT_NAME, str(FONT_FILE), asciiReadable=0)
    _cache_subsets(font)
    pdfmetrics.registerFont(font)
    return font


@functools.cache
def common() -> str:
    """The characters every document's subset starts with, in their fixed order: codes 1..N of
    subset 0 (code 32 is always the space)."""
    glyphs = register_font().face.charToGlyph
    chars = {chr(code) for code in range(33, 127)} | set(ROMANIAN) | set(SIGNS)
    return "".join(sorted(char for char in chars if ord(char) in glyphs))


def seed(doc: object) -> None:
    """Assigns `common()` to a new document's subset, before any text is drawn: a copy of the
    state reportlab's `splitString(common())` leaves, made once per process."""
    assignments, subsets, next_code = seed_state()
    state = register_font()._assignState(doc)
    state.assignments = dict(assignments)
    state.subsets = [list(subset) for subset in subsets]
    state.nextCode = next_code


@functools.cache
def seed_state() -> tuple[dict[int, int], tuple[tuple[int, ...], ...], int]:
    """(code point -> code, the subsets' code points, the next free code) of a seeded document."""

    class Probe:  # a weak-referenceable stand-in for a document
        pass

    probe = Probe()
    font = register_font()
    font.splitString(common(), probe)
    state = font.state.pop(probe)
    return dict(state.assignments), tuple(map(tuple, state.subsets)), state.nextCode


class _FontProgram(bytes):
    """A cached stream's content (a subset font program, a ToUnicode CMap), with its Flate
    stream computed once."""

    @functools.cached_property
    def compressed(self) -> bytes:
        return zlib.compress(self)


class _CachingFlate(pdfdoc.PDFStreamFilterZCompress):
    """reportlab's Flate filter, taking a cached font program's stream from the program."""

    def encode(self, text):
        return text.compressed if type(text) is _FontProgram else super().encode(text)


_caching = True


@contextlib.contextmanager
def plain_reportlab() -> Iterator[None]:
    """Within: subsets are built and compressed by reportlab alone, as if `register_font` had
    not wrapped them (the benchmark's floor measures reportlab's own cost). reportlab registers
    one font object per font file, so a second registration would not do it. Not for threads."""
    global _caching
    _caching = False
    try:
        yield
    finally:
        _caching = True


def _cache_subsets(font: TTFont) -> None:
    """Subset font programs built once per distinct subset (reportlab builds one per document).

    reportlab looks up `makeSubset` on the face and `PDFZCompress` in its pdfdoc module when it
    embeds a subset, so both are replaced here, for this process; any other stream still goes
    through zlib exactly as before.
    """
    make_subset = font.face.makeSubset

    @functools.lru_cache(maxsize=SUBSET_CACHE)
    def built(subset: tuple[int, ...]) -> _FontProgram:
        return _FontProgram(make_subset(list(subset)))

    def subset_program(subset: list[int]) -> bytes:
        return built(tuple(subset)) if _caching else make_subset(subset)

    font.face.makeSubset = subset_program
    if not isinstance(pdfdoc.PDFZCompress, _CachingFlate):
        pdfdoc.PDFZCompress = _CachingFlate()
    _cache_font_objects(font)


def _cache_font_objects(font: TTFont) -> None:
    """The other per-subset objects reportlab writes, formatted once per distinct subset: the
    Widths array (formatted number by number, about 240 numbers a document) and the ToUnicode
    CMap (built line by line and compressed). `addObjects` is reportlab's own; only how its
    results are formatted changes, to the bytes reportlab would write."""
    add_objects = font.addObjects

    def add_cached_objects(doc: object) -> None:
        add_objects(doc)
        if not _caching:
            return
        for pdf_font in doc.idToObject["BasicFonts"].dict.values():
            widths = getattr(pdf_font, "Widths", None)
            if type(widths) is pdfdoc.PDFArray:
                pdf_font.Widths = _formatted_array(tuple(widths.sequence), rl_config.pdfMultiLine)

    font.addObjects = add_cached_objects
    if not hasattr(ttfonts.makeToUnicodeCMap, "cache_info"):
        ttfonts.makeToUnicodeCMap = _cached_cmap(ttfonts.makeToUnicodeCMap)


class _Formatted(pdfdoc.PDFObject):
    """A PDF object whose bytes were formatted before."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def format(self, document: object) -> bytes:
        return self.data


@functools.lru_cache(maxsize=SUBSET_CACHE)
def _formatted_array(numbers: tuple[int, ...], multiline: int) -> _Formatted:
    return _Formatted(pdfdoc.PDFArray(numbers).format(None))


def _cached_cmap(make_cmap: Callable[[str, list[int]], str]) -> Callable[[str, list[int]], object]:
    @functools.lru_cache(maxsize=SUBSET_CACHE)
    def built(name: str, subset: tuple[int, ...]) -> _FontProgram:
        # PDFZCompress compresses a text as UTF-8 and the CMap is ASCII: the same stream
        return _FontProgram(make_cmap(name, list(subset)).encode("utf-8"))

    @functools.wraps(make_cmap)
    def cmap(name: str, subset: list[int]) -> object:
        return built(name, tuple(subset)) if _caching else make_cmap(name, subset)

    cmap.cache_info = built.cache_info  # marks the wrapper: wrap once per process
    return cmap


@functools.cache
def _code_points() -> frozenset[int]:
    return frozenset(register_font().face.charToGlyph)


@functools.cache
def _drawable() -> frozenset[str]:
    """Every character the font has a glyph for and that prints."""
    return frozenset(c for c in map(chr, _code_points()) if c.isprintable())


def undrawable(text: str) -> str | None:
    """The first character of `text` that the font has no glyph for, or None."""
    if _drawable().issuperset(text):
        return None  # one set walk in C: the usual case, for Romanian text too
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
