"""A realistic one-page sample invoice: the reference for docs/invoice-sample.png and the bench.

python -m renderers.sample_page OUT.pdf [--language ro|en]

Twelve lines with diacritics (one typed with the old cedilla letters, printed with comma-below
ones), the 21 % and 11 % rates, a VAT-exempt line, a discount and a line with its own period.
"""

from __future__ import annotations

import argparse
import functools
from datetime import date
from decimal import Decimal
from pathlib import Path

from billing.domain.model import Address, Customer, InvoiceLine, IssuedInvoice, VatLine
from billing.domain.money import compute_totals, line_net
from renderers.pdf import render_invoice
from renderers.supplier import load_supplier

# description, quantity, unit price without VAT, VAT rate, service period (None: the cycle's)
SAMPLE_CHARGES: tuple[tuple[str, str, str, str, tuple[date, date] | None], ...] = (
    ("Abonament Mobil Nelimitat 25 (nr. 0722 123 456)", "1", "45.00", "21", None),
    ("Abonament Internet Fibră 1000 Mbps", "1", "39.90", "21", None),
    ("Abonament TV Digital – pachet Extra, 180 de canale", "1", "29.50", "21", None),
    ("Convorbiri naţionale peste abonament (minute)", "42", "0.0450", "21", None),
    ("Trafic de date mobile suplimentar (GB)", "3.275", "4.99", "21", None),
    ("SMS internaționale", "12", "0.25", "21", None),
    (
        "Roaming în afara UE (Serbia) – trafic de date, pachet „Călătorie” de 2 GB",
        "1",
        "24.00",
        "21",
        (date(2026, 10, 14), date(2026, 10, 20)),
    ),
    ("Închiriere echipament TV (decodor HD)", "1", "5.00", "21", None),
    ("Revista digitală „Știință și Tehnică”, abonament lunar", "1", "9.90", "11", None),
    ("Carte electronică „Poveștile Țării de Sus”", "1", "19.90", "11", None),
    ("Asigurare telefon mobil – Protecție Extinsă", "1", "12.50", "0", None),
    ("Reducere de fidelitate: 10% din abonamentul Internet", "1", "-3.99", "21", None),
)


def sample_customer(language: str = "ro") -> Customer:
    """A private customer in Bucharest; the name is typed with a cedilla Ş on purpose."""
    return Customer(
        customer_id="C0001042",
        name="Ştefănescu Ioana-Mădălina",
        tax_id="2850312400129",
        address=Address(
            street="Str. Aviator Ștefan Sănătescu nr. 44, bl. A2, sc. 1, ap. 12",
            city="București",
            county="Sector 1",
            postal_code="011478",
        ),
        phone="+40722123456",
        email="ioana.stefanescu@example.ro",
        language=language,
        delivery="electronic",
        notify="email",
    )


@functools.cache
def warm_up() -> None:
    """Render the reference invoice once in this process, so that the font and its per-process
    caches (the common subset's font program, the encoded labels) are built: a render process
    forked after this starts with them instead of building them again for every chunk."""
    render_invoice(sample_invoice(), load_supplier())


def sample_invoice(language: str = "ro") -> IssuedInvoice:
    """The reference invoice: one page, twelve lines, totals computed as in contract 2."""
    lines = tuple(
        InvoiceLine(
            line_no=number,
            description=description,
            quantity=Decimal(quantity),
            unit_price=Decimal(price),
            net=line_net(Decimal(quantity), Decimal(price)),
            vat_rate=Decimal(rate),
            service_start=period[0] if period else None,
            service_end=period[1] if period else None,
        )
        for number, (description, quantity, price, rate, period) in enumerate(
            SAMPLE_CHARGES, start=1
        )
    )
    totals = compute_totals((line.net, line.vat_rate) for line in lines)
    return IssuedInvoice(
        number="OR00012345",
        series="OR",
        cycle_id="2026-11",
        customer=sample_customer(language),
        issue_date=date(2026, 11, 1),
        due_date=date(2026, 11, 21),
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        currency="RON",
        lines=lines,
        vat=tuple(VatLine(rate=s.rate, base=s.base, vat=s.vat) for s in totals.by_rate),
        net_total=totals.net,
        vat_total=totals.vat,
        total=totals.gross,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the PDF")
    parser.add_argument("--language", choices=("ro", "en"), default="ro")
    args = parser.parse_args(argv)
    args.out.write_bytes(render_invoice(sample_invoice(args.language), load_supplier()))


if __name__ == "__main__":
    main()
