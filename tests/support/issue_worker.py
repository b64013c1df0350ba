"""A separate process that issues invoices, for the concurrency tests.

python issue_worker.py LEDGER_URL BATCH_SIZE CUSTOMERS CYCLE [CYCLE ...]
"""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal

from billing.domain.model import Address, Charge, Customer, Cycle
from billing.stages.issuing import issue_invoices, register_cycle
from storage.ledger import open_ledger


def cycle(month: int) -> Cycle:
    return Cycle(
        cycle_id=f"2026-{month:02d}", series="OR",
        period_start=date(2026, month - 1, 1), period_end=date(2026, month - 1, 28),
        issue_date=date(2026, month, 1), due_date=date(2026, month, 21),
    )  # fmt: skip


def items(customers: int, lines: int = 4) -> list[tuple[Customer, list[Charge]]]:
    result = []
    for i in range(customers):
        cid = f"C{i:06d}"
        customer = Customer(
            customer_id=cid, name=f"Client Țăran {i}", tax_id="",
            address=Address("Str. Mărului 1", "Iași", "Iași", "700001"),
            phone="+40722000000", email="c@example.ro", language="ro",
            delivery="electronic", notify="email",
        )  # fmt: skip
        charges = [
            Charge(
                cid, f"Serviciu {n}", Decimal("1"), Decimal(f"{n + i % 7}.99"), Decimal("21"), row=n
            )
            for n in range(lines)
        ]
        result.append((customer, charges))
    return result


def main(argv: list[str]) -> None:
    url, batch, customers, *months = argv
    engine = open_ledger(url)
    data = items(int(customers))
    for month in months:
        c = cycle(int(month))
        register_cycle(engine, c)
        issue_invoices(engine, c, data, run_id=f"worker-{month}", batch_size=int(batch))


if __name__ == "__main__":
    main(sys.argv[1:])
