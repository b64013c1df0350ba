"""Staging the cycle export: every bad row quarantined with its reason, the rest partitioned."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from billing.domain.errors import InputError
from billing.domain.model import ChunkRef
from billing.stages.staging import read_chunk, stage_cycle
from storage.blobs import open_store
from storage.blobs.s3 import S3Store
from tests.support.paths import SAMPLES


def quarantine_rows(staging, cycle_id="2026-11") -> list[dict]:
    text = staging.read_bytes(f"{cycle_id}/quarantine.csv").decode()
    return list(csv.DictReader(io.StringIO(text)))


def staged_ids(staging, staged) -> list[str]:
    return [c.customer_id for ref in staged.chunks for c, _ in read_chunk(staging, ref)]


def test_every_documented_bad_row_is_quarantined_and_valid_customers_kept(tmp_path):
    staging = open_store(str(tmp_path / "staging"))
    staged = stage_cycle(open_store(str(SAMPLES)), staging, "2026-11", chunk_size=64)
    bad = json.loads((SAMPLES / "2026-11" / "BAD_ROWS.json").read_text())
    report = quarantine_rows(staging)
    found = {(r["file"], int(r["row"]), r["column"], r["reason"], r["action"]) for r in report}
    for entry in bad:
        action = "quarantined" if entry["quarantined"] else "flagged"
        assert (entry["file"], entry["row"], entry["column"], entry["reason"], action) in found, (
            entry
        )

    quarantined = {
        e["customer_id"] for e in bad if e["quarantined"] and e["file"] == "customers.csv"
    }
    quarantined |= {
        e["customer_id"] for e in bad if e["quarantined"] and e["reason"] != "unknown_customer"
    }
    with (SAMPLES / "2026-11" / "customers.csv").open(encoding="utf-8") as f:
        all_ids = {row["customer_id"] for row in csv.DictReader(f)}
    ids = staged_ids(staging, staged)
    assert len(ids) == len(set(ids))
    assert set(ids) == all_ids - quarantined
    assert staged.customers == len(all_ids)
    assert staged.quarantined_customers == len(quarantined)
    assert staged.flagged_customers == 2
    assert len(staged.chunks) == 5 and all(c.total == 5 for c in staged.chunks)
    # each charge of a quarantined customer is reported too, so nothing disappears silently
    with (SAMPLES / "2026-11" / "charges.csv").open(encoding="utf-8") as f:
        orphan_rows = {
            n for n, row in enumerate(csv.DictReader(f), start=2) if row["customer_id"] not in ids
        }
    assert orphan_rows == {int(r["row"]) for r in report if r["file"] == "charges.csv"}
    assert staged.quarantined_rows == len(
        {(r["file"], r["row"]) for r in report if r["action"] == "quarantined"}
    )


def test_chunk_holds_customers_with_their_charges_in_file_order(tmp_path):
    staging = open_store(str(tmp_path / "staging"))
    staged = stage_cycle(open_store(str(SAMPLES)), staging, "2026-10", chunk_size=100)
    items = [item for ref in staged.chunks for item in read_chunk(staging, ref)]
    assert len(items) == 300 and staged.quarantined_rows == 0
    for customer, charges in items:
        assert 3 <= len(charges) <= 40
        assert all(c.customer_id == customer.customer_id for c in charges)
        assert [c.row for c in charges] == sorted(c.row for c in charges)
    assert sum(len(ch) for _, ch in items) == staged.charges


def to_parquet(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    shutil.copy(src / "cycle.json", dst / "cycle.json")
    for name in ("customers", "charges"):
        options = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in next(csv.reader((src / f"{name}.csv").open()))},
            strings_can_be_null=False,
        )
        pq.write_table(
            pacsv.read_csv(src / f"{name}.csv", convert_options=options), dst / f"{name}.parquet"
        )


def test_parquet_export_stages_like_csv(tmp_path):
    to_parquet(SAMPLES / "2026-11", tmp_path / "src" / "2026-11")
    csv_staging, pq_staging = open_store(str(tmp_path / "a")), open_store(str(tmp_path / "b"))
    from_csv = stage_cycle(open_store(str(SAMPLES)), csv_staging, "2026-11")
    from_parquet = stage_cycle(open_store(str(tmp_path / "src")), pq_staging, "2026-11")
    assert from_csv.chunks == from_parquet.chunks
    # Parquet rows are numbered from 1 (no header line), CSV rows by their line
    for (c1, ch1), (c2, ch2) in zip(
        read_chunk(csv_staging, from_csv.chunks[0]),
        read_chunk(pq_staging, from_parquet.chunks[0]),
        strict=True,
    ):
        assert c1 == c2
        assert [replace(c, row=c.row - 1) for c in ch1] == ch2
    reasons = lambda rows: sorted((r["customer_id"], r["reason"]) for r in rows)  # noqa: E731
    assert reasons(quarantine_rows(csv_staging)) == reasons(quarantine_rows(pq_staging))


def test_stages_from_s3_to_s3(s3_bucket, tmp_path):
    client, bucket = s3_bucket
    for path in (SAMPLES / "2026-11").iterdir():
        client.upload_file(str(path), bucket, f"exports/2026-11/{path.name}")
    source = open_store(f"s3://{bucket}/exports")
    staging = open_store(f"s3://{bucket}/staging")
    assert isinstance(source, S3Store)
    staged = stage_cycle(source, staging, "2026-11")
    local = stage_cycle(open_store(str(SAMPLES)), open_store(str(tmp_path / "s")), "2026-11")
    assert staged.chunks == local.chunks
    assert staging.exists("2026-11/quarantine.csv")
    assert len(read_chunk(staging, staged.chunks[0])) == staged.chunks[0].customers


def write_cycle(
    folder: Path, customers: str | bytes, charges: str, cycle: dict | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cycle.json").write_text(json.dumps(cycle or {
        "cycle_id": folder.name, "series": "OR", "period_start": "2026-10-01",
        "period_end": "2026-10-31", "issue_date": "2026-11-01", "due_date": "2026-11-21",
        "currency": "RON"}))  # fmt: skip
    data = customers.encode() if isinstance(customers, str) else customers
    (folder / "customers.csv").write_bytes(data)
    (folder / "charges.csv").write_text(charges, encoding="utf-8")
    return folder


HEADER = "customer_id,name,street,city,county,postal_code,language,delivery,notify\n"
CHARGES = "customer_id,description,quantity,unit_price,vat_rate\n"


def test_malformed_and_multiline_records_keep_their_line_numbers(tmp_path):
    write_cycle(
        tmp_path / "src" / "2026-11",
        HEADER
        + 'C1,"Ana\nMaria",Str. A 1,Iași,Iași,700001,ro,electronic,email\n'
        + "C2,too,few,fields\n"
        + "C3,Ion,Str. B 2,Cluj-Napoca,Cluj,400001,ro,paper,none\n",
        CHARGES + "C1,Abonament,1,10,21\nC3,Abonament,1,10,21\nC3,Extra,1,1,21,unexpected\n",
    )
    staging = open_store(str(tmp_path / "st"))
    staged = stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    rows = {(r["file"], r["row"], r["reason"]) for r in quarantine_rows(staging)}
    assert rows == {
        ("customers.csv", "4", "malformed_row"),
        ("charges.csv", "4", "malformed_row"),
    }
    items = read_chunk(staging, staged.chunks[0])
    assert [(c.customer_id, c.name) for c, _ in items] == [("C1", "Ana Maria"), ("C3", "Ion")]
    assert (staged.customers, staged.quarantined_customers, staged.quarantined_rows) == (3, 1, 2)


def test_bytes_that_are_not_utf8_cost_only_their_row(tmp_path):
    write_cycle(
        tmp_path / "src" / "2026-11",
        (HEADER + "C1,Ana,Str. A 1,Iași,Iași,700001,ro,electronic,email\n").encode()
        + b"C2,Ion \xff\xfe,Str. B,Cluj-Napoca,Cluj,400001,ro,paper,none\n",
        CHARGES + "C1,Abonament,1,10,21\nC2,Abonament,1,10,21\n",
    )
    with (tmp_path / "src" / "2026-11" / "charges.csv").open("ab") as charges:
        charges.write(b"C\xff,Abonament,1,10,21\n")
    staging = open_store(str(tmp_path / "st"))
    staged = stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    rows = {(r["file"], r["row"], r["column"], r["reason"]) for r in quarantine_rows(staging)}
    assert ("customers.csv", "3", "name", "invalid_encoding") in rows
    assert ("charges.csv", "4", "customer_id", "unknown_customer") in rows
    assert [c.customer_id for c, _ in read_chunk(staging, staged.chunks[0])] == ["C1"]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        pytest.param(
            lambda d: (d / "charges.csv").unlink(), "charges.csv: missing", id="no-charges-file"
        ),
        pytest.param(
            lambda d: (d / "cycle.json").write_text("{"), "not valid UTF-8 JSON", id="bad-json"
        ),
        pytest.param(
            lambda d: (d / "customers.csv").write_text("customer_id,name\nC1,A\n"),
            r"missing column\(s\): street, city, postal_code, delivery, notify",
            id="columns",
        ),  # fmt: skip
        pytest.param(
            lambda d: (d / "cycle.json").write_text(json.dumps({"cycle_id": "2026-11"})),
            "series: missing",
            id="cycle-fields",
        ),  # fmt: skip
    ],
)
def test_unusable_files_fail_with_one_clear_message_naming_the_file(tmp_path, break_it, message):
    folder = write_cycle(tmp_path / "src" / "2026-11", HEADER, CHARGES)
    break_it(folder)
    with pytest.raises(InputError, match=message) as info:
        stage_cycle(open_store(str(tmp_path / "src")), open_store(str(tmp_path / "st")), "2026-11")
    assert str(tmp_path / "src" / "2026-11") in str(info.value)


def test_staging_flags_texts_the_invoice_font_cannot_draw_and_keeps_the_customer(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SAMPLES / "2026-10", source / "2026-10")
    customers = source / "2026-10" / "customers.csv"
    rows = list(csv.DictReader(customers.open(encoding="utf-8")))
    rows[0]["name"] = "Ion \U0001f680 Popescu"  # DejaVu Sans Condensed has no rocket
    rows[1]["name"] = "Ana \u202eucsepoP\u202c Pop\u200fescu"  # RLO ... PDF, and an RLM
    rows[2]["name"] = "Ștefănescu Țurcanu Îonuț-Mădălin"
    with customers.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    staging = open_store(str(tmp_path / "staging"))
    before = stage_cycle(open_store(str(SAMPLES)), staging, "2026-10", chunk_size=100)
    staged = stage_cycle(open_store(str(source)), staging, "2026-10", chunk_size=100)
    report = quarantine_rows(staging, "2026-10")
    assert [(r["row"], r["column"], r["action"]) for r in report if r["row"] == "2"] == [
        ("2", "name", "flagged")
    ]
    assert {r["reason"] for r in report if r["row"] in ("2", "3", "4")} == {"unprintable_text"}
    assert (staged.quarantined_customers, staged.quarantined_rows) == (
        before.quarantined_customers,
        before.quarantined_rows,
    )
    assert staged.flagged_customers == before.flagged_customers + 1
    names = {c.customer_id: c.name for ref in staged.chunks for c, _ in read_chunk(staging, ref)}
    assert names[rows[0]["customer_id"]] == "Ion \U0001f680 Popescu"
    assert names[rows[1]["customer_id"]] == "Ana ucsepoP Popescu"
    assert names[rows[2]["customer_id"]] == "Ștefănescu Țurcanu Îonuț-Mădălin"


def test_a_chunk_descriptor_staged_under_the_old_field_names_still_reads():
    old = {"cycle_id": "2026-11", "chunk": 2, "chunks": 5, "customers": 64, "charges": 900,
           "first_customer": "C0000065", "last_customer": "C0000128"}  # fmt: skip
    ref = ChunkRef.from_dict(old)
    assert (ref.number, ref.total) == (2, 5)
    assert ChunkRef.from_dict(ref.as_dict()) == ref


ROW_C1 = "C1,Ana,Str. A 1,Iași,Iași,700001,ro,electronic,email\n"
ROW_C3 = "C3,Ion,Str. B 2,Cluj-Napoca,Cluj,400001,ro,paper,none\n"
CHARGES_C1_C3 = CHARGES + "C1,Abonament,1,10,21\nC3,Abonament,1,10,21\n"


@pytest.mark.parametrize(
    "huge",
    [
        pytest.param("x" * 200_000, id="over-csv-field-limit"),
        pytest.param('"' + "y\n" * 150_000 + '"', id="multi-line-over-csv-field-limit"),
        pytest.param("z" * 5_000_000, id="over-the-record-bound"),
    ],
)
def test_an_oversized_field_costs_only_its_row(tmp_path, huge):
    # before: csv.Error "field larger than field limit (131072)" stopped the whole cycle
    write_cycle(
        tmp_path / "src" / "2026-11",
        HEADER + ROW_C1 + f"C2,Maria,{huge},Iași,Iași,700001,ro,electronic,email\n" + ROW_C3,
        CHARGES_C1_C3 + "C2,Abonament,1,10,21\n",
    )
    staging = open_store(str(tmp_path / "st"))
    staged = stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    rows = quarantine_rows(staging)
    assert {(r["file"], r["row"], r["customer_id"], r["column"], r["reason"]) for r in rows} == {
        ("customers.csv", "3", "C2", "street", "too_long"),
        ("charges.csv", "4", "C2", "customer_id", "customer_quarantined"),
    }
    assert all(len(r["detail"]) < 1000 for r in rows)
    # the reader picks up again at the next record: C3 is invoiced
    assert [c.customer_id for c, _ in read_chunk(staging, staged.chunks[0])] == ["C1", "C3"]
    assert (staged.customers, staged.quarantined_customers) == (3, 1)


def test_an_oversized_charge_field_costs_only_its_row(tmp_path):
    write_cycle(
        tmp_path / "src" / "2026-11",
        HEADER + ROW_C1 + ROW_C3,
        CHARGES_C1_C3 + f"C3,{'d' * 140_000},1,1,21\n",
    )
    staging = open_store(str(tmp_path / "st"))
    staged = stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    found = {(r["file"], r["row"], r["column"], r["reason"]) for r in quarantine_rows(staging)}
    assert ("charges.csv", "4", "description", "too_long") in found
    assert ("customers.csv", "3", "*", "invalid_charges") in found
    assert [c.customer_id for c, _ in read_chunk(staging, staged.chunks[0])] == ["C1"]


def test_a_broken_quote_costs_only_its_record_and_names_the_line_it_starts_on(tmp_path):
    # before: csv.Error "',' expected after '"'" stopped the cycle, naming line 3 (its end)
    write_cycle(
        tmp_path / "src" / "2026-11",
        HEADER
        + ROW_C1
        + 'C2,"Ana\nMaria"x,Str. A 1,Iași,Iași,700001,ro,electronic,email\n'
        + ROW_C3,
        CHARGES_C1_C3,
    )
    staging = open_store(str(tmp_path / "st"))
    staged = stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    rows = quarantine_rows(staging)
    assert [(r["file"], r["row"], r["reason"]) for r in rows] == [
        ("customers.csv", "3", "malformed_row")
    ]
    assert "lines 3-4" in rows[0]["detail"]
    assert [c.customer_id for c, _ in read_chunk(staging, staged.chunks[0])] == ["C1", "C3"]


def test_a_quote_left_open_is_reported_from_the_line_it_opens_on(tmp_path):
    write_cycle(
        tmp_path / "src" / "2026-11",
        HEADER
        + ROW_C1
        + ROW_C3
        + 'C4,"Ana,Str. A 1,Iași,Iași,700001,ro,electronic,email\n'
        + "C5,Ion,Str. B 2,Cluj-Napoca,Cluj,400001,ro,paper,none\n",
        CHARGES_C1_C3,
    )
    staging = open_store(str(tmp_path / "st"))
    stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    rows = quarantine_rows(staging)
    assert [(r["row"], r["reason"]) for r in rows] == [("4", "malformed_row")]
    assert "end of the file" in rows[0]["detail"]


def test_a_stray_quote_inside_an_unquoted_field_is_text(tmp_path):
    write_cycle(
        tmp_path / "src" / "2026-11",
        HEADER + 'C1,Ana 5" Pop,Str. A 1,Iași,Iași,700001,ro,electronic,email\n' + ROW_C3,
        CHARGES_C1_C3,
    )
    staging = open_store(str(tmp_path / "st"))
    staged = stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    assert quarantine_rows(staging) == []
    names = [c.name for c, _ in read_chunk(staging, staged.chunks[0])]
    assert names == ['Ana 5" Pop', "Ion"]


WINDOWS_1250_ROWS = [
    "C1,Ştefan Popescu,Str. Mică 1,Iaşi,Iaşi,700001,ro,electronic,email",
    "C2,Maria Tănăsescu,Bd. Independenţei 5,Bucureşti,Bucureşti,010001,ro,paper,none",
    "C3,Gheorghe Ţîrcă,Str. Brăilei 2,Brăila,Brăila,810001,ro,electronic,sms",
    "C4,Ana Moşneagu,Calea Moşilor 9,Braşov,Braşov,500001,ro,electronic,email",
    "C5,Ion Ionescu,Str. A 1,Cluj-Napoca,Cluj,400001,ro,electronic,email",
]


def test_a_file_in_another_encoding_fails_the_stage_once_naming_the_encoding(tmp_path):
    # before: every row with a diacritic was quarantined as invalid_encoding, \udcxx in details
    write_cycle(
        tmp_path / "src" / "2026-11",
        (HEADER + "\n".join(WINDOWS_1250_ROWS) + "\n").encode("cp1250"),
        CHARGES + "".join(f"C{i},Abonament,1,10,21\n" for i in range(1, 6)),
    )
    with pytest.raises(InputError, match=r"customers\.csv: not UTF-8 \(looks like Windows-1250"):
        stage_cycle(open_store(str(tmp_path / "src")), open_store(str(tmp_path / "st")), "2026-11")


def test_quarantine_report_cells_are_inert_in_a_spreadsheet(tmp_path):
    write_cycle(
        tmp_path / "src" / "2026-11",
        HEADER
        + ROW_C1
        + '"=HYPERLINK(""http://x"",""y"")",Ana,Str. A 1,Iași,Iași,700001,ro,electronic,email\n'
        + "@SUM(1),Ion,Str. B 2,Cluj-Napoca,Cluj,400001,ro,paper,none\n"
        + "C4,Ștefan Țăran,Str. Învățătorului 2,Brașov,Brașov,500001,ro,electronic,fax\n",
        CHARGES_C1_C3 + "+cmd|' /C calc'!A0,Abonament,1,10,21\n-2+3,Abonament,1,10,21\n",
    )
    staging = open_store(str(tmp_path / "st"))
    stage_cycle(open_store(str(tmp_path / "src")), staging, "2026-11")
    rows = quarantine_rows(staging)
    ids = {r["customer_id"] for r in rows}
    assert {'\'=HYPERLINK("http://x","y")', "'@SUM(1)", "'+cmd|' /C calc'!A0", "'-2+3"} <= ids
    for r in rows:
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in r.values()), r
    # ordinary Romanian text goes through as it is
    assert any(r["customer_id"] == "C4" and "'fax'" in r["detail"] for r in rows)


def test_a_file_with_bare_carriage_return_line_endings_fails_once_saying_so(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SAMPLES / "2026-10", source / "2026-10")
    customers = source / "2026-10" / "customers.csv"
    text = customers.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r")
    customers.write_bytes(text)
    with pytest.raises(InputError, match="customers.csv: lines end in a bare carriage return"):
        stage_cycle(open_store(str(source)), open_store(str(tmp_path / "staging")), "2026-10")


def test_chunks_grow_past_the_chunk_size_rather_than_exceed_the_most_chunks(tmp_path):
    source = open_store(str(SAMPLES))
    one, other = open_store(str(tmp_path / "small")), open_store(str(tmp_path / "few"))
    small = stage_cycle(source, one, "2026-11", chunk_size=10)
    few = stage_cycle(source, other, "2026-11", chunk_size=10, max_chunks=4)
    assert len(small.chunks) == 32 and len(few.chunks) == 4
    assert all(c.total == 4 and c.customers > 10 for c in few.chunks)
    assert sorted(staged_ids(other, few)) == sorted(staged_ids(one, small))
