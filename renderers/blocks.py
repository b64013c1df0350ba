"""Blocks: positioned text and shapes that know their height before anything is drawn.

A `Block` records drawing operations relative to its own top-left corner (dy grows downwards);
the template composes blocks, `paginate` decides which rows go on which page, and `draw_page`
puts a page's blocks on a reportlab canvas: first the shapes, then all the text in one text
object, emitting a font, colour or render-mode operator only when the style changes.

The text object's operators are written here rather than through reportlab's `textLine`, which
re-encoded every string into the document's font subset, character by character, and formatted
its operators one call at a time: a third of an invoice's rendering time. A text made of the
characters every subset starts with (`renderers.fonts.common`) has the same codes in every
document, so its encoded form is kept per process; any other text is encoded by reportlab's
`splitString` into the document's own subset, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reportlab.lib.rl_accel import escapePDF, fp_str
from reportlab.pdfgen.canvas import Canvas

from renderers.fonts import common, register_font, seed, seed_state, text_width

Color = tuple[float, float, float]
LINE_WIDTHS = {"rule": 0.5, "frame": 0.75}
BOLD_STROKE = 0.3  # points; the outline stroke that makes regular glyphs look bold


@dataclass(frozen=True, slots=True)
class Style:
    """Text style; `bold` strokes the glyph outlines too (one embedded font, no bold face)."""

    size: float
    color: Color
    bold: bool = False


class Block:
    """Drawing operations relative to the block's top-left (dy grows downwards), and its height."""

    __slots__ = ("height", "shapes", "texts")

    def __init__(self) -> None:
        self.height = 0.0
        self.texts: list[tuple[float, float, str, Style]] = []
        self.shapes: list[tuple[str, float, float, float, float, Color]] = []

    def text(self, x: float, dy: float, value: str, style: Style, align: str = "left") -> None:
        """One line of text with its baseline at `dy`; `x` is its right end when align="right"."""
        if align == "right":
            x -= text_width(value, style.size)
        self.texts.append((x, dy, value, style))

    def lines(
        self, x: float, dy: float, values: Iterable[str], style: Style, leading: float, **kw
    ) -> float:
        """Draws one text per line from baseline `dy`; the baseline after the last line."""
        for value in values:
            self.text(x, dy, value, style, **kw)
            dy += leading
        return dy

    def fill(self, x: float, dy: float, width: float, height: float, color: Color) -> None:
        self.shapes.append(("fill", x, dy, width, height, color))

    def frame(self, x: float, dy: float, width: float, height: float, color: Color) -> None:
        self.shapes.append(("frame", x, dy, width, height, color))

    def rule(self, x1: float, x2: float, dy: float, color: Color) -> None:
        self.shapes.append(("rule", x1, dy, x2 - x1, 0.0, color))

    def place(self, other: Block, dy: float) -> None:
        """Copies `other` into this block with its top at `dy`."""
        self.texts.extend((x, dy + ody, value, style) for x, ody, value, style in other.texts)
        self.shapes.extend((k, x, dy + ody, w, h, c) for k, x, ody, w, h, c in other.shapes)


def paginate(
    heights: Sequence[float], first: float, others: float, continued: float, closing: float
) -> list[range]:
    """Row indexes per page.

    `first` and `others` are the heights available to rows on the first and later pages; a page
    that is not the last also holds the "continued" note, the last one the `closing` part. When
    the closing part does not fit under the last rows, the last row moves to a new page with it,
    so that the totals never stand on a page without the table.
    """
    pages: list[range] = []
    start, used, capacity = 0, 0.0, first
    for index, height in enumerate(heights):
        if index > start and used + height + continued > capacity:
            pages.append(range(start, index))
            start, used, capacity = index, 0.0, others
        used += height
    end = len(heights)
    if used + closing > capacity and end - start > 1:
        pages.append(range(start, end - 1))
        start = end - 1
    pages.append(range(start, end))
    return pages


def draw_page(canvas: Canvas, placements: Sequence[tuple[Block, float]]) -> None:
    """Draws one page: each block with its top edge at the paired y (points from the bottom)."""
    _draw_shapes(canvas, placements)
    canvas.setLineWidth(BOLD_STROKE)
    canvas.addLiteral(_text_object(canvas._doc, placements))
    canvas.showPage()


def _text_object(doc: object, placements: Sequence[tuple[Block, float]]) -> str:
    """One BT … ET text object with every text of the page; a font, colour or render-mode
    operator only where the style changes."""
    font = register_font()
    _seeded(font, doc)
    code = ["BT"]
    font_op = (-1, 0.0)  # (subset, size) of the last Tf
    color: Color | None = None
    stroke: Color | None = None
    bold = False
    for block, top in placements:
        for x, dy, value, style in block.texts:
            if style.color != color:
                color = style.color
                code.append(_operator(color, "rg"))
            if style.bold and style.color != stroke:
                stroke = style.color
                code.append(_operator(stroke, "RG"))
            if style.bold != bold:
                bold = style.bold
                code.append("2 Tr" if bold else "0 Tr")
            code.append(_origin(x, top - dy))
            encoded = _common_code(value)
            parts = ((0, encoded),) if encoded is not None else _own_code(font, value, doc)
            for subset, string in parts:
                if (subset, style.size) != font_op:
                    font_op = (subset, style.size)
                    name = font.getSubsetInternalName(subset, doc)
                    code.append(f"{name} {_operator((style.size,), 'Tf')}")
                code.append(f"({string}) Tj")
    code.append("ET")
    return "\n".join(code)


# Positions and colours repeat from invoice to invoice (labels, columns): formatted once.
@functools.lru_cache(maxsize=8192)
def _origin(x: float, y: float) -> str:
    return f"1 0 0 1 {fp_str(x, y)} Tm"


@functools.lru_cache(maxsize=256)
def _operator(operands: tuple[float, ...], operator: str) -> str:
    return f"{fp_str(*operands)} {operator}"


def _seeded(font, doc: object) -> None:
    """Seeds a new document's subset with `common()`; refuses one whose subset began otherwise
    (its codes would not be the cached ones)."""
    state = font.state.get(doc)
    if state is None:
        seed(doc)
    elif any(state.assignments.get(ord(char)) != code for char, code in _first_codes()):
        raise RuntimeError("the document's font subset was started without renderers.fonts.seed")


@functools.cache
def _common_codes() -> dict[int, int]:
    """Code point -> code in subset 0 of every seeded document."""
    codes = dict(seed_state()[0])
    codes[0xA0] = codes[32]  # reportlab prints a no-break space as a space
    return codes


@functools.cache
def _first_codes() -> tuple[tuple[str, int], ...]:
    codes = _common_codes()
    return tuple((char, codes[ord(char)]) for char in common()[:3])


@functools.cache
def _common_table() -> tuple[frozenset[str], dict[int, str]]:
    """The characters with a common code, and a str.translate table to those codes."""
    codes = _common_codes()
    return frozenset(map(chr, codes)), {point: chr(code) for point, code in codes.items()}


@functools.lru_cache(maxsize=16384)
def _common_code(text: str) -> str | None:
    """`text` encoded into subset 0 and escaped for a PDF string, when every character of it is
    one of `common()`; else None."""
    chars, table = _common_table()
    if not chars.issuperset(text):
        return None
    return escapePDF(text.translate(table).encode("latin-1"))


def _own_code(font, text: str, doc: object) -> list[tuple[int, str]]:
    return [(subset, escapePDF(part)) for subset, part in font.splitString(text, doc)]


def _draw_shapes(canvas: Canvas, placements: Sequence[tuple[Block, float]]) -> None:
    fill: Color | None = None
    stroke: Color | None = None
    line_width = 0.0
    for block, top in placements:
        for kind, x, dy, width, height, color in block.shapes:
            y = top - dy - height
            if kind == "fill":
                if color != fill:
                    canvas.setFillColorRGB(*color)
                    fill = color
                canvas.rect(x, y, width, height, stroke=0, fill=1)
                continue
            if color != stroke:
                canvas.setStrokeColorRGB(*color)
                stroke = color
            if LINE_WIDTHS[kind] != line_width:
                line_width = LINE_WIDTHS[kind]
                canvas.setLineWidth(line_width)
            if kind == "rule":
                canvas.line(x, y, x + width, y)
            else:
                canvas.rect(x, y, width, height, stroke=1, fill=0)
