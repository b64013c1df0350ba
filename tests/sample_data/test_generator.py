"""The synthetic cycle generator, the deliberately bad rows and the committed sample cycles."""

from __future__ import annotations

import calendar
import csv
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sample_data import generator
from sample_data.bad_rows import inject_bad_rows
from sample_data.generator import CHARGE_COLUMNS, CUSTOMER_COLUMNS, write_cycle
from sample_data.make_samples import CUSTOMERS, CYCLES_DIR, SAMPLES, make_samples

CENT = Decimal("0.01")
E164 = re.compile(r"\+[1-9]\d{7,14}")
EMAIL = re.compile(r"[a-z0-9._-]+@[a-z0-9-]+(\.[a-z0-9-]+)+")
DECIMAL = re.compile(r"-?\d+(\.\d+)?")
COMMA_BELOW = "ăâîșțĂÂÎȘȚ"
CEDILLA = "şţŞŢ"
NEW_RATES, OLD_RATES = {"21", "11", "0"}, {"19", "9", "5", "0"}


@pytest.fixture(scope="module")
def cycles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clean cycles of 300 customers, seed 3: 2026-10 and 2026-11 (CSV and Parquet), 2025-08."""
    root = tmp_path_factory.mktemp("cycles")
    for cycle_id in ("2026-10", "2026-11", "2025-08"):
        write_cycle(root / "csv", cycle_id, 300, seed=3)
    write_cycle(root / "parquet", "2026-11", 300, seed=3, fmt="parquet")
    return root


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or ()), list(reader)


def cnp_is_valid(cnp: str) -> bool:
    if not re.fullmatch(r"[1-8]\d{12}", cnp):
        return False
    century = {"1": 1900, "2": 1900, "3": 1800, "4": 1800, "5": 2000, "6": 2000}.get(cnp[0], 1900)
    year, month, day = century + int(cnp[1:3]), int(cnp[3:5]), int(cnp[5:7])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return False
    if not 1 <= int(cnp[7:9]) <= 52:
        return False
    check = sum(int(d) * int(w) for d, w in zip(cnp, "279146358279", strict=False)) % 11
    return cnp[12] == ("1" if check == 10 else str(check))


def cui_is_valid(cui: str) -> bool:
    if not re.fullmatch(r"\d{2,10}", cui):
        return False
    body = cui[:-1].rjust(9, "0")
    check = sum(int(d) * int(w) for d, w in zip(body, "753217532", strict=True)) * 10 % 11
    return cui[-1] == str(check % 10)


def customer_problems(row: dict[str, str]) -> list[str]:
    """What is wrong with a customers row, as the contract and the brief define it."""
    problems = []
    if not re.fullmatch(r"C\d{7,}", row["customer_id"]):
        problems.append("customer_id")
    if not row["name"].strip():
        problems.append("name")
    tax_id = row["tax_id"]
    if tax_id and not (cnp_is_valid(tax_id) if len(tax_id) == 13 else cui_is_valid(tax_id)):
        problems.append("tax_id")
    if not all(row[column] for column in ("street", "city", "postal_code")):
        problems.append("address")
    if row["country"] == "RO":
        if not re.fullmatch(r"\d{6}", row["postal_code"]) or not row["county"]:
            problems.append("postal_code")
    elif row["country"] not in {"DE", "IT", "MD"}:
        problems.append("country")
    if row["phone"] and not E164.fullmatch(row["phone"]):
        problems.append("phone")
    if row["email"] and not EMAIL.fullmatch(row["email"]):
        problems.append("email")
    if (row["language"], row["delivery"]) not in {
        (a, b) for a in ("ro", "en") for b in ("electronic", "paper")
    }:
        problems.append("language/delivery")
    if row["notify"] not in {"email", "sms", "both", "none"}:
        problems.append("notify")
    paper = [row[f"paper_{part}"] for part in ("street", "city", "county", "postal_code")]
    if any(paper) and not all(paper):
        problems.append("paper address")
    return problems


def charge_problems(row: dict[str, str], cycle: dict[str, str]) -> list[str]:
    """What is wrong with a charges row of ``cycle``."""
    problems = []
    if not row["description"].strip():
        problems.append("description")
    if not (DECIMAL.fullmatch(row["quantity"]) and DECIMAL.fullmatch(row["unit_price"])):
        problems.append("decimal")
    start, end = row["service_start"], row["service_end"]
    if not cycle["period_start"] <= start <= end <= cycle["period_end"]:
        problems.append("service period")
    in_force = NEW_RATES if date.fromisoformat(end) >= date(2025, 8, 1) else OLD_RATES
    if row["vat_rate"] not in in_force:
        problems.append("vat_rate")
    return problems


def invoice_totals(charges: list[dict[str, str]]) -> dict[str, Decimal]:
    """Contract 2: per customer, Σ bases + Σ VAT, rounding half up at every step."""
    bases: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in charges:
        net = (Decimal(row["quantity"]) * Decimal(row["unit_price"])).quantize(CENT, ROUND_HALF_UP)
        bases[row["customer_id"]][int(row["vat_rate"])] += net
    return {
        customer_id: sum(
            base + (base * rate / 100).quantize(CENT, ROUND_HALF_UP)
            for rate, base in by_rate.items()
        )
        for customer_id, by_rate in bases.items()
    }


def assert_valid_cycle(folder: Path, skip: set[str] = frozenset()) -> None:
    """Every row of a CSV cycle is valid, apart from the customers in ``skip``."""
    cycle = json.loads((folder / "cycle.json").read_text(encoding="utf-8"))
    header, customers = read_csv(folder / "customers.csv")
    assert header == list(CUSTOMER_COLUMNS)
    header, charges = read_csv(folder / "charges.csv")
    assert header == list(CHARGE_COLUMNS)
    customers = [row for row in customers if row["customer_id"] not in skip]
    charges = [row for row in charges if row["customer_id"] not in skip]
    ids = [row["customer_id"] for row in customers]
    assert len(set(ids)) == len(ids)
    assert {
        row["customer_id"]: customer_problems(row) for row in customers if customer_problems(row)
    } == {}
    assert [
        (row, charge_problems(row, cycle)) for row in charges if charge_problems(row, cycle)
    ] == []
    lines = Counter(row["customer_id"] for row in charges)
    assert set(lines) == set(ids)
    assert all(3 <= count <= 40 for count in lines.values())
    totals = invoice_totals(charges)
    assert [customer_id for customer_id, total in totals.items() if total <= 0] == []


@pytest.mark.parametrize(
    ("cycle_id", "period_start", "period_end", "issue_date", "due_date"),
    [
        ("2026-11", "2026-10-01", "2026-10-31", "2026-11-01", "2026-11-21"),
        ("2026-01", "2025-12-01", "2025-12-31", "2026-01-01", "2026-01-21"),
        ("2024-03", "2024-02-01", "2024-02-29", "2024-03-01", "2024-03-21"),
    ],
)
def test_cycle_json_bills_the_previous_month(
    tmp_path: Path,
    cycle_id: str,
    period_start: str,
    period_end: str,
    issue_date: str,
    due_date: str,
) -> None:
    folder = write_cycle(tmp_path, cycle_id, 3)
    assert folder == tmp_path / cycle_id
    assert json.loads((folder / "cycle.json").read_text(encoding="utf-8")) == {
        "cycle_id": cycle_id,
        "series": "OR",
        "period_start": period_start,
        "period_end": period_end,
        "issue_date": issue_date,
        "due_date": due_date,
        "currency": "RON",
    }


@pytest.mark.parametrize(
    ("cycle_id", "customers", "fmt"),
    [("2026-13", 1, "csv"), ("26-11", 1, "csv"), ("2026-11", -1, "csv"), ("2026-11", 1, "xlsx")],
)
def test_rejects_bad_arguments(tmp_path: Path, cycle_id: str, customers: int, fmt: str) -> None:
    with pytest.raises(ValueError):
        write_cycle(tmp_path, cycle_id, customers, fmt=fmt)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_arguments_give_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    first = write_cycle(tmp_path / "a", "2026-11", 150, seed=5, fmt=fmt)
    second = write_cycle(tmp_path / "b", "2026-11", 150, seed=5, fmt=fmt)
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(["cycle.json", f"customers.{fmt}", f"charges.{fmt}"])
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    other = write_cycle(tmp_path / "c", "2026-11", 150, seed=6, fmt=fmt)
    assert (other / f"customers.{fmt}").read_bytes() != (first / f"customers.{fmt}").read_bytes()


def test_cycles_share_customers_and_differ_in_charges(cycles: Path) -> None:
    october, november = cycles / "csv" / "2026-10", cycles / "csv" / "2026-11"
    customers = (november / "customers.csv").read_bytes()
    assert (october / "customers.csv").read_bytes() == customers
    assert (october / "charges.csv").read_bytes() != (november / "charges.csv").read_bytes()
    # the first customers of a bigger cycle are the same people (only the id width may grow)
    bigger = write_cycle(cycles / "bigger", "2026-11", 400, seed=3)
    assert (bigger / "customers.csv").read_bytes().startswith(customers)


@pytest.mark.parametrize("cycle_id", ["2026-11", "2025-08"])
def test_every_row_follows_the_contract(cycles: Path, cycle_id: str) -> None:
    assert_valid_cycle(cycles / "csv" / cycle_id)


def test_vat_rates_follow_the_period(cycles: Path) -> None:
    rates = {
        cycle_id: Counter(
            row["vat_rate"] for row in read_csv(cycles / "csv" / cycle_id / "charges.csv")[1]
        )
        for cycle_id in ("2025-08", "2026-11")
    }
    assert set(rates["2025-08"]) == OLD_RATES
    assert set(rates["2026-11"]) == NEW_RATES
    for counts in rates.values():
        assert counts.most_common(1)[0][0] in {"19", "21"}


def test_charges_cover_every_kind(cycles: Path) -> None:
    charges = read_csv(cycles / "csv" / "2026-11" / "charges.csv")[1]
    descriptions = {row["description"] for row in charges}
    for prefix in (
        "Abonament Mobil",
        "Minute naționale",
        "Roaming UE date (MB)",
        "Rată telefon",
        "Discount fidelitate",
        "Reducere 10% abonament",
        "Servicii internaționale scutite",
        "Trafic date suplimentar (GB)",
    ):
        assert any(description.startswith(prefix) for description in descriptions), prefix
    assert any(re.fullmatch(r"\d+\.\d{3}", row["quantity"]) for row in charges)
    assert any(re.fullmatch(r"\d+\.\d{4}", row["unit_price"]) for row in charges)
    assert any(row["unit_price"].startswith("-") for row in charges)
    subscriptions = [row for row in charges if row["description"].startswith("Abonament Mobil")]
    assert {
        (row["quantity"], row["service_start"], row["service_end"]) for row in subscriptions
    } == {("1", "2026-10-01", "2026-10-31")}


def test_customer_mix_is_realistic(tmp_path: Path) -> None:
    customers = read_csv(write_cycle(tmp_path, "2026-11", 3000) / "customers.csv")[1]

    def share(predicate) -> float:
        return sum(1 for row in customers if predicate(row)) / len(customers)

    assert 0.11 < share(lambda row: row["name"].endswith((" SRL", " SA", "SRL-D", " SNC"))) < 0.19
    assert 0.11 < share(lambda row: 0 < len(row["tax_id"]) < 13) < 0.19
    assert 0.21 < share(lambda row: len(row["tax_id"]) == 13) < 0.30
    assert 0.002 < share(lambda row: row["country"] != "RO") < 0.03
    assert 0.03 < share(lambda row: not row["phone"]) < 0.07
    assert 0.005 < share(lambda row: row["phone"] and not row["phone"].startswith("+40")) < 0.04
    assert all(len(row["phone"]) == 12 for row in customers if row["phone"].startswith("+40"))
    assert 0.06 < share(lambda row: not row["email"]) < 0.10
    assert 0.12 < share(lambda row: row["language"] == "en") < 0.19
    assert 0.16 < share(lambda row: row["delivery"] == "paper") < 0.24
    assert 0.07 < share(lambda row: row["paper_street"]) < 0.13
    assert share(lambda row: row["paper_street"] and row["delivery"] == "paper") > 0.05
    notify = Counter(row["notify"] for row in customers)
    assert [name for name, _ in notify.most_common()] == ["email", "sms", "both", "none"]
    # the clean data never forces a notification fallback
    assert all(row["email"] for row in customers if row["notify"] in ("email", "both"))
    assert all(row["phone"] for row in customers if row["notify"] in ("sms", "both"))
    assert len({row["city"] for row in customers}) > 40
    assert any(
        row["city"] == "București" and row["postal_code"].startswith("0") for row in customers
    )


def test_csv_encoding_line_ends_and_quoting(cycles: Path) -> None:
    for name in ("customers.csv", "charges.csv"):
        data = (cycles / "csv" / "2026-11" / name).read_bytes()
        assert b"\r" not in data and data.endswith(b"\n")
        data.decode("utf-8")
    text = (cycles / "csv" / "2026-11" / "customers.csv").read_text(encoding="utf-8")
    assert re.search(r'^C\d{7},[^\n]*,"[^"\n]*, [^"\n]*",', text, re.MULTILINE)


def test_diacritics_use_comma_below(cycles: Path) -> None:
    folder = cycles / "csv" / "2026-11"
    text = "".join(
        (folder / name).read_text(encoding="utf-8") for name in ("customers.csv", "charges.csv")
    )
    assert set(COMMA_BELOW) <= set(text)
    assert not set(CEDILLA) & set(text)


def test_parquet_has_the_same_rows_as_csv(
    cycles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_folder = cycles / "csv" / "2026-11"
    monkeypatch.setattr(generator, "PARQUET_ROW_GROUP", 1000)
    folder = write_cycle(tmp_path, "2026-11", 300, seed=3, fmt="parquet")
    assert not list(folder.glob("*.csv"))
    assert (folder / "cycle.json").read_bytes() == (csv_folder / "cycle.json").read_bytes()
    for table in ("customers", "charges"):
        parquet = pq.ParquetFile(folder / f"{table}.parquet")
        assert {str(field.type) for field in parquet.schema_arrow} == {"string"}
        groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
        assert max(groups) < 1040
        header, rows = read_csv(csv_folder / f"{table}.csv")
        assert parquet.schema_arrow.names == header
        assert parquet.read().to_pylist() == rows
    full_size = pq.read_table(cycles / "parquet" / "2026-11" / "charges.parquet")
    assert full_size.to_pylist() == read_csv(csv_folder / "charges.csv")[1]


def test_committed_samples_are_reproducible(tmp_path: Path) -> None:
    make_samples(tmp_path)
    for cycle_id, _ in SAMPLES:
        committed, fresh = CYCLES_DIR / cycle_id, tmp_path / cycle_id
        names = sorted(path.name for path in fresh.iterdir())
        assert sorted(path.name for path in committed.iterdir()) == names
        for name in names:
            assert (committed / name).read_bytes() == (fresh / name).read_bytes(), name


def test_committed_samples_are_valid_except_the_bad_rows() -> None:
    assert_valid_cycle(CYCLES_DIR / "2026-10")
    october = read_csv(CYCLES_DIR / "2026-10" / "customers.csv")[1]
    assert len(october) == CUSTOMERS
    bad = json.loads((CYCLES_DIR / "2026-11" / "BAD_ROWS.json").read_text(encoding="utf-8"))
    assert_valid_cycle(CYCLES_DIR / "2026-11", skip={entry["customer_id"] for entry in bad})
    november = read_csv(CYCLES_DIR / "2026-11" / "customers.csv")[1]
    assert november[:CUSTOMERS] == october  # the same customers, then the bad ones


def test_bad_rows_are_where_and_what_they_claim(tmp_path: Path) -> None:
    folder = write_cycle(tmp_path, "2026-11", 40, seed=2)
    original = {name: (folder / name).read_bytes() for name in ("customers.csv", "charges.csv")}
    entries = inject_bad_rows(folder)
    assert json.loads((folder / "BAD_ROWS.json").read_text(encoding="utf-8")) == entries
    for name, data in original.items():
        assert (folder / name).read_bytes().startswith(data)  # only appended
    cycle = json.loads((folder / "cycle.json").read_text(encoding="utf-8"))
    files = {name: read_csv(folder / name)[1] for name in ("customers.csv", "charges.csv")}
    for entry in entries:
        row = files[entry["file"]][entry["row"] - 2]
        assert row["customer_id"] == entry["customer_id"]
        assert row[entry["column"]] == entry["value"]
        problems = (
            customer_problems(row)
            if entry["file"] == "customers.csv"
            else charge_problems(row, cycle)
        )
        assert problems or entry["reason"] in {"duplicate", "unknown_customer"}
    assert Counter((entry["file"], entry["reason"]) for entry in entries) == {
        ("customers.csv", "missing"): 1,
        ("customers.csv", "duplicate"): 2,
        ("customers.csv", "invalid_tax_id"): 1,
        ("customers.csv", "invalid_postal_code"): 1,
        ("customers.csv", "invalid_country"): 1,
        ("customers.csv", "invalid_choice"): 2,
        ("customers.csv", "incomplete_paper_address"): 1,
        ("customers.csv", "invalid_email"): 1,
        ("customers.csv", "invalid_phone"): 1,
        ("charges.csv", "unknown_customer"): 1,
        ("charges.csv", "invalid_decimal"): 2,
        ("charges.csv", "invalid_vat_rate"): 1,
        ("charges.csv", "invalid_service_period"): 1,
        ("charges.csv", "missing"): 1,
    }
    assert {entry["reason"] for entry in entries if not entry["quarantined"]} == {
        "invalid_email",
        "invalid_phone",
    }
    duplicated = [entry["row"] for entry in entries if entry["reason"] == "duplicate"]
    assert duplicated[0] == 2 and files["customers.csv"][0]["customer_id"] == "C0000001"
    assert [entry for entry in entries if entry["customer_id"] == "C9999999"] == [
        entry for entry in entries if entry["reason"] == "unknown_customer"
    ]
    # every bad customer but the duplicate has its own fresh id after the 40 generated ones
    fresh = {entry["customer_id"] for entry in entries} - {"C0000001", "C9999999"}
    assert fresh == {f"C{n:07d}" for n in range(41, 55)}
    # customers that are invoiced despite an unusable contact have valid charges
    flagged = {entry["customer_id"] for entry in entries if not entry["quarantined"]}
    invoiced = [row for row in files["charges.csv"] if row["customer_id"] in flagged]
    assert invoiced and not [row for row in invoiced if charge_problems(row, cycle)]
    assert all(total > 0 for total in invoice_totals(invoiced).values())
    with pytest.raises(FileExistsError):
        inject_bad_rows(folder)


def test_readme_documents_the_bad_rows() -> None:
    readme = (CYCLES_DIR.parent / "README.md").read_text(encoding="utf-8")
    bad = json.loads((CYCLES_DIR / "2026-11" / "BAD_ROWS.json").read_text(encoding="utf-8"))
    table = {
        tuple(cell.strip(" `") for cell in line.strip("|").split("|"))[:5]
        for line in readme.splitlines()
        if line.startswith("| ")
    }
    for entry in bad:
        row = (
            entry["file"],
            str(entry["row"]),
            entry["customer_id"],
            entry["column"],
            entry["reason"],
        )
        assert row in table, row


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generation_streams_in_bounded_memory(tmp_path: Path, fmt: str) -> None:
    # VmHWM is this process's own peak: ru_maxrss would start from the size of the (large)
    # test process the child was forked from.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sample_data.generator import write_cycle\n"
        "write_cycle(Path(sys.argv[1]), '2026-11', 100_000, fmt=sys.argv[2])\n"
        "status = Path('/proc/self/status').read_text().splitlines()\n"
        "print(next(line.split()[1] for line in status if line.startswith('VmHWM:')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_kib = int(done.stdout.split()[-1])  # /proc reports kB
    assert peak_kib < 400 * 1024
    customers = tmp_path / "2026-11" / f"customers.{fmt}"
    if fmt == "csv":
        with customers.open("rb") as handle:
            assert sum(1 for _ in handle) == 100_001
    else:
        assert pq.ParquetFile(customers).metadata.num_rows == 100_000
