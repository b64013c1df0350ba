"""Cells of the CSV files the product writes for people, made inert in a spreadsheet.

A spreadsheet opening a CSV runs any cell that starts with `=`, `+`, `-` or `@` as a formula
(and a leading tab or carriage return can hide one), so a customer named
`=HYPERLINK("http://evil","click")` would become a live link in the print house's or billing
ops' spreadsheet (OWASP "CSV injection"). Such a cell gets a leading apostrophe, which the
spreadsheet shows as text. The full-width forms (＝ ＋ － ＠) are included: some locales read
them as the ASCII ones.

A carriage return inside a cell becomes a line feed: the product's CSV files end their lines
with `\n`, and Python's csv module quotes a cell holding the line terminator but not a lone
`\r`, which readers then take for the end of the row. A `\n` cell is quoted, so the row stays
whole and the line break stays a line break.

A plain number (`-12.50`, `+3`) is left as it is: it is no formula, and it must stay a number a
spreadsheet can sum (a negative discount would otherwise turn into text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")

_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def spreadsheet_cell(value: object) -> object:
    """The value as it may go into a CSV cell: text that a spreadsheet would read as a formula
    gets a leading apostrophe, carriage returns become line feeds; numbers and other text are
    unchanged."""
    if isinstance(value, str) and "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        if not _PLAIN_NUMBER.fullmatch(value):
            return "'" + value
    return value


def spreadsheet_row(values: Iterable[object]) -> list[object]:
    """`spreadsheet_cell` of every value of a CSV row."""
    return [spreadsheet_cell(v) for v in values]
