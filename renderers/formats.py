"""Romanian number and date formats: 1.234,56 (thousands '.', decimals ','), dd.mm.yyyy."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

_SWAP_SEPARATORS = str.maketrans(",.", ".,")


def _grouped(value: Decimal, places: int) -> str:
    if not value:
        value = abs(value)  # never print "-0,00"
    return f"{value:,.{places}f}".translate(_SWAP_SEPARATORS)


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def format_amount(value: Decimal) -> str:
    """Money with two decimals: Decimal("-1234.5") -> "-1.234,50"."""
    return _grouped(value, 2)


def format_quantity(value: Decimal) -> str:
    """As many decimals as the quantity has, trailing zeros dropped: 3.275 -> "3,275", 2.0 -> "2"."""
    return _grouped(value, _places(value.normalize()))


def format_unit_price(value: Decimal) -> str:
    """At least two decimals, more when given: 12.5 -> "12,50", 0.0450 -> "0,0450"."""
    return _grouped(value, max(2, _places(value)))


def format_rate(value: Decimal) -> str:
    """A VAT rate in percent: Decimal("21") -> "21%", Decimal("9.50") -> "9,5%"."""
    return f"{format_quantity(value)}%"


def format_date(value: date) -> str:
    """dd.mm.yyyy."""
    return f"{value.day:02d}.{value.month:02d}.{value.year:04d}"
