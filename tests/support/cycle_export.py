"""Small cycle exports (contract 1) written by hand, for tests that follow a few customers over
several cycles: one line of charges per customer, the cycle dates as the sample generator
makes them."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from billing.domain.validation import CUSTOMER_COLUMNS
from sample_data.generator import cycle_info

CHARGE_COLUMNS = ("customer_id", "description", "quantity", "unit_price", "vat_rate")


def customer_row(customer_id: str, **fields: str) -> dict[str, str]:
    """A valid customers.csv row (electronic, e-mail, Romanian), with `fields` changed."""
    n = int("".join(c for c in customer_id if c.isdigit()) or 0)
    row = {
        "customer_id": customer_id, "name": f"Ioana Țepeș {n}", "tax_id": "",
        "street": f"Str. Mărului nr. {n}", "city": "Iași", "county": "Iași",
        "postal_code": "700259", "country": "RO", "phone": f"+4072{n:07d}",
        "email": f"client{n}@example.ro", "language": "ro", "delivery": "electronic",
        "notify": "email", "paper_street": "", "paper_city": "", "paper_county": "",
        "paper_postal_code": "",
    }  # fmt: skip
    row.update(fields)
    return row


def write_export(source: Path, cycle_id: str, customers: Sequence[dict[str, str]]) -> Path:
    """`<source>/<cycle_id>/` with cycle.json, customers.csv and charges.csv; returns it."""
    folder = source / cycle_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cycle.json").write_text(json.dumps(cycle_info(cycle_id)), encoding="utf-8")
    with (folder / "customers.csv").open("w", encoding="utf-8", newline="") as file:
        table = csv.DictWriter(file, CUSTOMER_COLUMNS, lineterminator="\n")
        table.writeheader()
        table.writerows(customers)
    with (folder / "charges.csv").open("w", encoding="utf-8", newline="") as file:
        table = csv.writer(file, lineterminator="\n")
        table.writerow(CHARGE_COLUMNS)
        table.writerows(
            [c["customer_id"], "Abonament Mobil 10", "1", "10.00", "21"] for c in customers
        )
    return folder
