"""The one rule every CSV writer uses to keep cells from running as spreadsheet formulas."""

from __future__ import annotations

import pytest

from billing.domain.spreadsheet import spreadsheet_cell, spreadsheet_row


@pytest.mark.parametrize(
    ("value", "written"),
    [
        pytest.param("=1+1", "'=1+1", id="formula"),
        pytest.param("-2+3", "'-2+3", id="minus-formula"),
        pytest.param("\r=1+1", "'\n=1+1", id="carriage-return"),
        pytest.param("\t=1+1", "'\t=1+1", id="tab"),
        pytest.param("-12.50", "-12.50", id="negative-amount-stays-a-number"),
        pytest.param("+3", "+3", id="signed-number"),
        pytest.param("-", "'-", id="lone-minus"),
        pytest.param("Ion-Ștefan", "Ion-Ștefan", id="inner-dash"),
        pytest.param("ăâîșț", "ăâîșț", id="romanian"),
        pytest.param("", "", id="empty"),
        pytest.param(-5, -5, id="int"),
    ],
)
def test_spreadsheet_cell(value, written):
    assert spreadsheet_cell(value) == written


def test_spreadsheet_row():
    assert spreadsheet_row(["@x", 3, "a"]) == ["'@x", 3, "a"]


def test_a_carriage_return_inside_a_cell_cannot_end_the_row():
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(spreadsheet_row(["C1\rX", "a\r\nb", "ok"]))
    [row] = list(csv.reader(io.StringIO(out.getvalue())))
    assert row == ["C1\nX", "a\nb", "ok"]
