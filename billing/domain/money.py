"""Money arithmetic of contract 2: exact `Decimal`, two decimals, halves away from zero.

line net = round(quantity x unit_price, 2)
per VAT rate: base = sum of line nets, VAT = round(base x rate / 100, 2)
invoice total = sum of bases + sum of VATs
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def round_money(amount: Decimal) -> Decimal:
    """Round to bani (two decimals), halves away from zero: -10.005 -> -10.01."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def line_net(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """The net amount of one invoice line."""
    return round_money(quantity * unit_price)


@dataclass(frozen=True, slots=True)
class VatSummary:
    """Taxable base and VAT for one rate (rate in percent, e.g. Decimal("21"))."""

    rate: Decimal
    base: Decimal
    vat: Decimal


@dataclass(frozen=True, slots=True)
class Totals:
    """An invoice's per-rate summary, ordered by rate descending, and its totals."""

    by_rate: tuple[VatSummary, ...]
    net: Decimal
    vat: Decimal
    gross: Decimal


def compute_totals(lines: Iterable[tuple[Decimal, Decimal]]) -> Totals:
    """Totals of an invoice from its `(net, vat_rate)` pairs, per contract 2."""
    bases: dict[Decimal, Decimal] = {}
    for net, rate in lines:
        bases[rate] = bases.get(rate, ZERO) + net
    summaries = tuple(
        VatSummary(rate=rate, base=base, vat=round_money(base * rate / 100))
        for rate, base in sorted(bases.items(), key=lambda item: item[0], reverse=True)
    )
    net_total = sum((s.base for s in summaries), ZERO)
    vat_total = sum((s.vat for s in summaries), ZERO)
    return Totals(by_rate=summaries, net=net_total, vat=vat_total, gross=net_total + vat_total)
