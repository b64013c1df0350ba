"""Blocks: positioned text and shapes that know their height before anything is drawn.

A `Block` records drawing operations relative to its own top-left corner (dy grows downwards);
the template composes blocks, `paginate` decides which rows go on which page, and `draw_page`
puts a page's blocks on a reportlab canvas: first the shapes, then all the text in one text
object, emitting a font, colour or render-mode operator only when the style changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reportlab.pdfgen.canvas import Canvas
from reportlab.pdfgen.textobject import PDFTextObject

from renderers.fonts import FONT_NAME, text_width

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
    text = canvas.beginText()
    pen = _Pen(text)
    for block, top in placements:
        for x, dy, value, style in block.texts:
            pen.use(style)
            text.setTextOrigin(x, top - dy)
            text.textLine(value)  # unlike textOut, does not measure the string again
    canvas.setLineWidth(BOLD_STROKE)
    canvas.drawText(text)
    canvas.showPage()


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


class _Pen:
    """Emits font, colour and render-mode operators only when the style changes."""

    def __init__(self, text: PDFTextObject) -> None:
        self.text = text
        self.size = 0.0
        self.color: Color | None = None
        self.stroke: Color | None = None
        self.bold = False

    def use(self, style: Style) -> None:
        if style.size != self.size:
            self.text.setFont(FONT_NAME, style.size)
            self.size = style.size
        if style.color != self.color:
            self.text.setFillColorRGB(*style.color)
            self.color = style.color
        if style.bold and style.color != self.stroke:
            self.text.setStrokeColorRGB(*style.color)
            self.stroke = style.color
        if style.bold != self.bold:
            self.text.setTextRenderMode(2 if style.bold else 0)
            self.bold = style.bold
