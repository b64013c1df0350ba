"""Romanian number and date formats as printed on the invoice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from renderers.formats import (
    format_amount,
    format_date,
    format_quantity,
    format_rate,
    format_unit_price,
)


@pytest.mark.parametrize(
    ("formatter", "value", "expected"),
    [
        pytest.param(format_amount, "1234.56", "1.234,56", id="amount thousands"),
        pytest.param(format_amount, "1234567.5", "1.234.567,50", id="amount millions"),
        pytest.param(format_amount, "-10.01", "-10,01", id="negative amount"),
        pytest.param(format_amount, "-0.00", "0,00", id="no negative zero"),
        pytest.param(format_quantity, "3.275", "3,275", id="quantity keeps its decimals"),
        pytest.param(format_quantity, "2.000", "2", id="quantity drops trailing zeros"),
        pytest.param(format_quantity, "1500", "1.500", id="quantity thousands"),
        pytest.param(format_unit_price, "0.0450", "0,0450", id="price keeps four decimals"),
        pytest.param(format_unit_price, "12.5", "12,50", id="price has at least two"),
        pytest.param(format_unit_price, "-3.99", "-3,99", id="discount"),
        pytest.param(format_rate, "21", "21%", id="rate"),
        pytest.param(format_rate, "9.50", "9,5%", id="fractional rate"),
    ],
)
def test_numbers_use_the_romanian_format(formatter, value, expected):
    assert formatter(Decimal(value)) == expected


def test_dates_are_day_month_year():
    assert format_date(date(2026, 3, 7)) == "07.03.2026"
