"""Deliberately bad rows appended to a CSV cycle, to exercise validation and quarantine.

Every bad row belongs to a customer of its own, appended after the cycle's customers, so nothing
else of the cycle is affected; the exceptions are the ``duplicate`` row, which reuses the first
customer's id (both occurrences are quarantined), and the ``unknown_customer`` charge. The filler
data of these customers comes from the generator, so apart from the one bad value they are valid.

The expectation is returned and written to ``BAD_ROWS.json``: one entry per bad row, with the
file, its ``row`` (line number in the file, the header being line 1), the customer id, the
column, the reason code the validator emits, the bad value and whether the row is quarantined.
Unusable e-mail addresses and phone numbers are not quarantined: those customers are invoiced and
their notice falls back to another channel.
"""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

from sample_data.generator import (
    CHARGE_COLUMNS,
    CUSTOMER_COLUMNS,
    VAT_CHANGE,
    synthetic_customer,
    vat_rate,
)

BAD_ROWS_FILE = "BAD_ROWS.json"
UNKNOWN_CUSTOMER = "C9999999"
INVALID_CNP = "1850315400128"  # a man born 1985-03-15 in București; the check digit must be 5
_FILLER_SEED = 0  # seed of the generated customers the bad rows are made from


class _Appender:
    """Collects the appended rows of both files and the entries describing the bad ones."""

    def __init__(
        self,
        cycle: dict[str, str],
        width: int,
        next_index: int,
        customer_lines: int,
        charge_lines: int,
    ) -> None:
        self.cycle = cycle
        self.width = width
        self.next_index = next_index
        self.lines = {"customers.csv": customer_lines, "charges.csv": charge_lines}
        self.rows: dict[str, list[list[str]]] = {"customers.csv": [], "charges.csv": []}
        self.entries: list[dict] = []
        self.filler_index = 0

    def customer(self, charges: int, customer_id: str | None = None, **overrides: str) -> str:
        """Append a valid customer with ``overrides`` and its first ``charges`` charges.

        The customer gets the next free id unless ``customer_id`` is given; returns the id.
        """
        row, lines = self._filler()
        if customer_id is None:
            customer_id = f"C{self.next_index:0{self.width}d}"
            self.next_index += 1
        row.update(overrides, customer_id=customer_id)
        self._append("customers.csv", [row[column] for column in CUSTOMER_COLUMNS])
        for line in lines[:charges]:
            self.charge({**line, "customer_id": customer_id})
        return customer_id

    def charge(self, line: dict[str, str]) -> None:
        """Append a charges row."""
        self._append("charges.csv", [line[column] for column in CHARGE_COLUMNS])

    def flag(self, file: str, column: str, reason: str, quarantined: bool = True) -> None:
        """Describe the row last appended to ``file`` as bad in ``column``."""
        columns = CUSTOMER_COLUMNS if file == "customers.csv" else CHARGE_COLUMNS
        record = dict(zip(columns, self.rows[file][-1], strict=True))
        self.entry(
            file,
            self.lines[file],
            record["customer_id"],
            column,
            reason,
            record[column],
            quarantined,
        )

    def entry(
        self,
        file: str,
        row: int,
        customer_id: str,
        column: str,
        reason: str,
        value: str,
        quarantined: bool,
    ) -> None:
        """Describe line ``row`` of ``file`` as bad."""
        self.entries.append(
            {
                "file": file,
                "row": row,
                "customer_id": customer_id,
                "column": column,
                "reason": reason,
                "value": value,
                "quarantined": quarantined,
            }
        )

    def _append(self, file: str, values: list[str]) -> None:
        self.rows[file].append(values)
        self.lines[file] += 1

    def _filler(self) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The next generated customer with a plain profile that no override can contradict."""
        while True:
            self.filler_index += 1
            row, lines = synthetic_customer(
                self.cycle["cycle_id"], _FILLER_SEED, self.filler_index, self.width
            )
            if (
                row["country"] == "RO"
                and not row["tax_id"]
                and not row["paper_street"]
                and row["email"]
                and row["phone"]
                and row["delivery"] == "electronic"
            ):
                return row, lines


def inject_bad_rows(cycle_dir: Path) -> list[dict]:
    """Append a documented handful of bad rows to the CSV cycle in ``cycle_dir``.

    Returns one entry per bad row (``file``, ``row``, ``customer_id``, ``column``, ``reason``,
    ``value``, ``quarantined``) and writes the same list to ``cycle_dir/BAD_ROWS.json``. The
    duplicate id is reported twice, once per occurrence. Refuses a cycle that already has them.
    """
    cycle_dir = Path(cycle_dir)
    customers_path, charges_path = cycle_dir / "customers.csv", cycle_dir / "charges.csv"
    expectation_path = cycle_dir / BAD_ROWS_FILE
    if expectation_path.exists():
        raise FileExistsError(f"{expectation_path} exists: bad rows were already injected")
    cycle = json.loads((cycle_dir / "cycle.json").read_text(encoding="utf-8"))
    ids = _column(customers_path, "customer_id")
    if not ids:
        raise ValueError(f"{customers_path} has no customer to duplicate")
    if UNKNOWN_CUSTOMER in ids:
        raise ValueError(f"{customers_path} already has customer {UNKNOWN_CUSTOMER}")
    period_start, period_end = cycle["period_start"], cycle["period_end"]
    end = date.fromisoformat(period_end)
    out_of_force = VAT_CHANGE - timedelta(days=1) if end >= VAT_CHANGE else VAT_CHANGE
    bad = _Appender(
        cycle,
        width=len(ids[0]) - 1,
        next_index=max(int(customer_id[1:]) for customer_id in ids) + 1,
        customer_lines=1 + len(ids),
        charge_lines=1 + len(_column(charges_path, "customer_id")),
    )

    customers = "customers.csv"
    bad.customer(2, name="")
    bad.flag(customers, "name", "missing")
    bad.entry(customers, 2, ids[0], "customer_id", "duplicate", ids[0], quarantined=True)
    bad.customer(0, customer_id=ids[0])
    bad.flag(customers, "customer_id", "duplicate")
    bad.customer(2, name="Mihai Dumitrescu", tax_id=INVALID_CNP)
    bad.flag(customers, "tax_id", "invalid_tax_id")
    bad.customer(2, postal_code="12AB")
    bad.flag(customers, "postal_code", "invalid_postal_code")
    bad.customer(2, country="XX")
    bad.flag(customers, "country", "invalid_country")
    bad.customer(2, notify="fax")
    bad.flag(customers, "notify", "invalid_choice")
    bad.customer(2, language="fr")
    bad.flag(customers, "language", "invalid_choice")
    bad.customer(2, delivery="paper", paper_street="Str. Fabricii nr. 3")
    bad.flag(customers, "paper_city", "incomplete_paper_address")
    bad.customer(2, name="Ion Popescu", email="ion.popescu@@example", notify="email")
    bad.flag(customers, "email", "invalid_email", quarantined=False)
    bad.customer(2, phone="0722 123 456", notify="sms")
    bad.flag(customers, "phone", "invalid_phone", quarantined=False)

    charges = "charges.csv"
    standard = str(vat_rate("standard", end))
    whole_period = {"vat_rate": standard, "service_start": period_start, "service_end": period_end}
    for column, value, reason, template in (
        (
            "unit_price",
            "12,50",
            "invalid_decimal",
            {"description": "Opțiune Internet 5 GB extra", "quantity": "1"},
        ),
        (
            "quantity",
            "abc",
            "invalid_decimal",
            {"description": "Minute naționale în afara abonamentului", "unit_price": "0.0450"},
        ),
        (
            "vat_rate",
            str(vat_rate("standard", out_of_force)),
            "invalid_vat_rate",
            {
                "description": "Trafic date suplimentar (GB)",
                "quantity": "2.500",
                "unit_price": "4.1322",
            },
        ),
        (
            "service_end",
            period_start,
            "invalid_service_period",
            {
                "description": "Roaming UE date (MB) – Italia",
                "quantity": "256.000",
                "unit_price": "0.0041",
                "service_start": period_end,
            },
        ),
        ("description", "", "missing", {"quantity": "1", "unit_price": "9.90"}),
    ):
        customer_id = bad.customer(1)
        bad.charge({**whole_period, **template, "customer_id": customer_id, column: value})
        bad.flag(charges, column, reason)
    bad.charge(
        {
            **whole_period,
            "customer_id": UNKNOWN_CUSTOMER,
            "description": "Abonament Mobil Start 10 GB",
            "quantity": "1",
            "unit_price": "24.79",
        }
    )
    bad.flag(charges, "customer_id", "unknown_customer")

    for file, path in ((customers, customers_path), (charges, charges_path)):
        with path.open("a", encoding="utf-8", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(bad.rows[file])
    expectation_path.write_text(
        json.dumps(bad.entries, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8",
        newline="\n",
    )
    return bad.entries


def _column(path: Path, column: str) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [record[column] for record in csv.DictReader(handle)]
