"""The e-Factura deadline: 5 working days after the issue date, weekends and Romanian public
holidays (Orthodox Easter included) not counted."""

from __future__ import annotations

from datetime import date

import pytest

from billing.domain.deadlines import add_working_days, reporting_deadline, working_days_left


@pytest.mark.parametrize(
    ("issued", "deadline"),
    [
        pytest.param(date(2026, 10, 5), date(2026, 10, 12), id="monday-across-a-weekend"),
        pytest.param(date(2026, 10, 7), date(2026, 10, 14), id="wednesday-across-a-weekend"),
        # Sun 1 Nov: Mon 2 .. Fri 6
        pytest.param(date(2026, 11, 1), date(2026, 11, 6), id="issued-on-a-sunday"),
        # Fri 27 Nov: Sat, Sun, St Andrew (Mon 30), National Day (Tue 1 Dec), then Wed 2 .. Tue 8
        pytest.param(date(2026, 11, 27), date(2026, 12, 8), id="weekend-and-two-holidays"),
        # Thu 9 Apr 2026: Good Friday 10, Easter Monday 13 (Orthodox), then Tue 14 .. Mon 20
        pytest.param(date(2026, 4, 9), date(2026, 4, 20), id="orthodox-easter"),
        # Wed 23 Dec: Christmas Fri 25 (and Sat 26), New Year Fri 1 and Sat 2 Jan 2027
        pytest.param(date(2026, 12, 23), date(2026, 12, 31), id="christmas"),
    ],
)
def test_the_deadline_is_the_fifth_working_day_after_issue(issued, deadline):
    assert reporting_deadline(issued) == deadline


def test_working_days_left_count_to_the_deadline_and_past_it():
    deadline = date(2026, 12, 8)  # Tue
    assert working_days_left(deadline, date(2026, 12, 7)) == 1
    assert working_days_left(deadline, date(2026, 12, 5)) == 2  # Sat: Mon and Tue to go
    assert working_days_left(deadline, deadline) == 0
    assert working_days_left(deadline, date(2026, 12, 9)) == -1
    assert working_days_left(deadline, date(2026, 12, 14)) == -4  # Mon: Wed, Thu, Fri, Mon
    assert add_working_days(date(2026, 11, 27), 1) == date(2026, 12, 2)
