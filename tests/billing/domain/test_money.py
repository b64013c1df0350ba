"""Contract 2 checked against an independent computation in exact fractions of a ban."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.money import compute_totals, line_net, round_money


def half_away_cents(amount: Fraction) -> int:
    """Round an exact amount of lei to whole bani, halves away from zero, in integers only."""
    scaled = amount * 100
    magnitude = (abs(scaled.numerator) * 2 + scaled.denominator) // (2 * scaled.denominator)
    return magnitude if scaled >= 0 else -magnitude


def decimals(places: int, limit: int):
    return st.integers(-limit * 10**places, limit * 10**places).map(
        lambda n: Decimal(n).scaleb(-places)
    )


line = st.tuples(
    st.one_of(decimals(0, 100), decimals(3, 10_000), decimals(6, 10)),
    st.one_of(decimals(2, 5_000), decimals(4, 100)),
    st.sampled_from([Decimal(r) for r in ("21", "11", "9", "5", "0", "19")]),
)


@given(st.lists(line, min_size=1, max_size=40))
def test_totals_match_an_exact_integer_computation(lines):
    nets = [line_net(q, p) for q, p, _ in lines]
    totals = compute_totals(zip(nets, (r for _, _, r in lines), strict=True))

    expected_nets = [half_away_cents(Fraction(q) * Fraction(p)) for q, p, _ in lines]
    assert [int(n * 100) for n in nets] == expected_nets
    bases: dict[Fraction, int] = {}
    for cents, (_, _, rate) in zip(expected_nets, lines, strict=True):
        bases[Fraction(rate)] = bases.get(Fraction(rate), 0) + cents
    vats = {rate: half_away_cents(Fraction(base, 100) * rate / 100) for rate, base in bases.items()}

    assert {Fraction(s.rate): int(s.base * 100) for s in totals.by_rate} == bases
    assert {Fraction(s.rate): int(s.vat * 100) for s in totals.by_rate} == vats
    assert totals.gross * 100 == sum(bases.values()) + sum(vats.values())
    assert totals.net + totals.vat == totals.gross
    assert all(v.as_tuple().exponent == -2 for v in (totals.net, totals.vat, totals.gross))


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        pytest.param("-10.005", "-10.01", id="negative-half-away-from-zero"),
        pytest.param("10.005", "10.01", id="positive-half-up"),
        pytest.param("10.0049", "10.00", id="below-half"),
        pytest.param("-0.004", "0.00", id="tiny-negative"),
    ],
)
def test_round_money(amount, rounded):
    assert round_money(Decimal(amount)) == Decimal(rounded)


def test_one_summary_row_per_rate_highest_rate_first():
    totals = compute_totals(
        [(Decimal("100.00"), Decimal("21")), (Decimal("9.99"), Decimal("11")),
         (Decimal("-10.00"), Decimal("21")), (Decimal("5.00"), Decimal("0"))]
    )  # fmt: skip
    assert [(s.rate, s.base, s.vat) for s in totals.by_rate] == [
        (Decimal("21"), Decimal("90.00"), Decimal("18.90")),
        (Decimal("11"), Decimal("9.99"), Decimal("1.10")),
        (Decimal("0"), Decimal("5.00"), Decimal("0.00")),
    ]
    assert (totals.net, totals.vat, totals.gross) == (
        Decimal("104.99"), Decimal("20.00"), Decimal("124.99"),
    )  # fmt: skip
