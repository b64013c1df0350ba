"""Deterministic synthetic billing cycles in the cycle export format (DESIGN.md, contract 1).

A cycle ``YYYY-MM`` bills the calendar month before it. Customers depend only on
``(seed, index)``, so every cycle generated with the same seed and count has the same customers;
their charges depend on ``(seed, cycle_id, index)``. Stable parts of a customer's bill (the
subscriptions, the device being paid off, standing discounts) belong to the customer, usage
varies per cycle. Rows are streamed to disk, so memory stays flat whatever the cycle size.
"""

from __future__ import annotations

import calendar
import csv
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SERIES = "OR"
CURRENCY = "RON"
PAYMENT_TERM_DAYS = 20
PARQUET_ROW_GROUP = 50_000
VAT_CHANGE = date(2025, 8, 1)  # Law 141/2025: 19/9/5 % became 21/11 %

CUSTOMER_COLUMNS = (
    "customer_id",
    "name",
    "tax_id",
    "street",
    "city",
    "county",
    "postal_code",
    "country",
    "phone",
    "email",
    "language",
    "delivery",
    "notify",
    "paper_street",
    "paper_city",
    "paper_county",
    "paper_postal_code",
)
CHARGE_COLUMNS = (
    "customer_id",
    "description",
    "quantity",
    "unit_price",
    "vat_rate",
    "service_start",
    "service_end",
)

# VAT class -> (rate before VAT_CHANGE, rate from VAT_CHANGE), in percent.
_VAT = {"standard": (19, 21), "reduced": (9, 11), "books": (5, 11), "exempt": (0, 0)}

_MALE_NAMES = (
    "Alexandru",
    "Andrei",
    "Mihai",
    "Ștefan",
    "Ion",
    "Gheorghe",
    "Constantin",
    "Vasile",
    "Nicolae",
    "Bogdan",
    "Cătălin",
    "Răzvan",
    "Ionuț",
    "Florin",
    "Adrian",
    "Cristian",
    "Dănuț",
    "Mircea",
    "Tudor",
    "Radu",
    "Sorin",
    "Marius",
    "Ovidiu",
    "Lucian",
    "Horațiu",
    "Petruț",
    "Traian",
    "Iulian",
    "Aurel",
    "Viorel",
    "Costel",
    "Sebastian",
    "Vlăduț",
    "Matei",
    "Luca",
    "Grigore",
    "Octavian",
    "Valentin",
    "Șerban",
    "Ștefăniță",
    "Mihai-Alexandru",
)
_FEMALE_NAMES = (
    "Maria",
    "Ana",
    "Elena",
    "Ioana",
    "Andreea",
    "Alexandra",
    "Cristina",
    "Mihaela",
    "Gabriela",
    "Roxana",
    "Bianca",
    "Larisa",
    "Ștefania",
    "Irina",
    "Simona",
    "Oana",
    "Raluca",
    "Diana",
    "Teodora",
    "Mădălina",
    "Ileana",
    "Anișoara",
    "Lăcrămioara",
    "Floarea",
    "Rodica",
    "Doina",
    "Viorica",
    "Ecaterina",
    "Ionela",
    "Georgiana",
    "Alina",
    "Ruxandra",
    "Nicoleta",
    "Ana-Maria",
    "Brândușa",
    "Cătălina",
    "Smaranda",
    "Ilinca",
    "Sânziana",
    "Ioana-Cătălina",
)
_SURNAMES = (
    "Popescu",
    "Ionescu",
    "Popa",
    "Pop",
    "Radu",
    "Dumitru",
    "Stan",
    "Stoica",
    "Gheorghe",
    "Matei",
    "Ciobanu",
    "Rusu",
    "Munteanu",
    "Constantin",
    "Moldovan",
    "Marin",
    "Lungu",
    "Ștefănescu",
    "Țurcanu",
    "Mureșan",
    "Bălan",
    "Dragomir",
    "Florea",
    "Nistor",
    "Năstase",
    "Mocanu",
    "Oprea",
    "Ene",
    "Dobre",
    "Barbu",
    "Sârbu",
    "Toma",
    "Lazăr",
    "Cristea",
    "Neagu",
    "Drăgan",
    "Bîrsan",
    "Căpraru",
    "Țăranu",
    "Șerban",
    "Șandru",
    "Ardeleanu",
    "Zăvoianu",
    "Măgureanu",
    "Pătrașcu",
    "Ilie",
    "Vasilescu",
    "Mihăilescu",
    "Grigoraș",
    "Cozma",
    "Chiriac",
    "Pârvu",
    "Iordache",
    "Ungureanu",
    "Stănescu",
    "Tănase",
    "Bucur",
    "Crăciun",
    "Bădescu",
    "Preda",
    "Enache",
    "Niculescu",
    "Roșu",
    "Știrbu",
    "Gâlcă",
    "Cârstea",
    "Brânzei",
    "Răducanu",
)
_COMPANY_NAMES = (
    "Tehnică Avansată",
    "Mărțișor Construct",
    "Carpați Logistic",
    "Dunărea Transport",
    "Știința Soft",
    "Țara Bârsei Agro",
    "Brâncuși Design",
    "Poiana Mărului Impex",
    "Fântâna Dorului Distribuție",
    "Câmpia Însorită",
    "Olt Prest Serv",
    "Băneasa Consulting",
    "Ialomița Cereale",
    "Arieș Metal",
    "Miorița Textile",
    "Mureș Mobilă",
    "Bucovina Lemn",
    "Siret Auto Service",
    "Delta Pescărie",
    "Plaiul Verde Fermă",
    "Hațeg Construcții",
    "Vâlcea Panouri Solare",
    "Învățare Digitală",
    "Rază de Soare Turism",
    "Țesătoria Modernă",
)
_LEGAL_FORMS = ("SRL", "SRL", "SRL", "SRL", "SA", "SRL-D", "SNC")
_COMPANY_MAILBOXES = ("office", "contact", "facturi", "contabilitate", "financiar")
_MAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "yahoo.ro")
_MAIL_DOMAIN_WEIGHTS = (55, 80, 92, 97, 100)  # cumulative

_STREETS = (
    "Str. Ștefan cel Mare",
    "Bd. Independenței",
    "Str. Mihai Eminescu",
    "Str. Avram Iancu",
    "Calea Victoriei",
    "Șos. Pantelimon",
    "Str. Mărășești",
    "Bd. Decebal",
    "Str. Tudor Vladimirescu",
    "Str. Lalelelor",
    "Aleea Trandafirilor",
    "Str. Zorilor",
    "Bd. 1 Decembrie 1918",
    "Str. Nicolae Bălcescu",
    "Str. Gheorghe Doja",
    "Str. Horea",
    "Str. Primăverii",
    "Str. Păcii",
    "Str. Fântânele",
    "Str. Câmpului",
    "Str. Școlii",
    "Str. Țepeș Vodă",
    "Str. Înfrățirii",
    "Str. Mănăstirii",
    "Bd. Carol I",
    "Str. Republicii",
    "Aleea Castanilor",
    "Calea Moșilor",
    "Str. Ion Creangă",
    "Str. Vasile Alecsandri",
    "Str. Mircea cel Bătrân",
    "Str. Gării",
    "Str. Morii",
    "Aleea Ștrandului",
    "Piața Unirii",
    "Intrarea Ghioceilor",
    "Str. Alexandru Ioan Cuza",
    "Str. Mihail Kogălniceanu",
    "Str. Constantin Brâncoveanu",
    "Bd. Ion C. Brătianu",
)
# (county, ((city, first three digits of its postal codes), ...)); București is handled apart.
_COUNTIES = (
    ("Alba", (("Alba Iulia", 510), ("Sebeș", 515))),
    ("Arad", (("Arad", 310), ("Lipova", 315))),
    ("Argeș", (("Pitești", 110), ("Câmpulung", 115), ("Curtea de Argeș", 115))),
    ("Bacău", (("Bacău", 600), ("Onești", 601))),
    ("Bihor", (("Oradea", 410), ("Salonta", 415))),
    ("Bistrița-Năsăud", (("Bistrița", 420), ("Năsăud", 425))),
    ("Botoșani", (("Botoșani", 710), ("Dorohoi", 715))),
    ("Brașov", (("Brașov", 500), ("Făgăraș", 505), ("Săcele", 505))),
    ("Buzău", (("Buzău", 120), ("Râmnicu Sărat", 125))),
    ("Călărași", (("Călărași", 910), ("Oltenița", 915))),
    ("Cluj", (("Cluj-Napoca", 400), ("Turda", 401), ("Dej", 405))),
    ("Constanța", (("Constanța", 900), ("Mangalia", 905), ("Năvodari", 905))),
    ("Dâmbovița", (("Târgoviște", 130), ("Găești", 135))),
    ("Dolj", (("Craiova", 200), ("Băilești", 205))),
    ("Galați", (("Galați", 800), ("Tecuci", 805))),
    ("Harghita", (("Miercurea Ciuc", 530), ("Odorheiu Secuiesc", 535))),
    ("Hunedoara", (("Deva", 330), ("Hunedoara", 331), ("Petroșani", 332))),
    ("Iași", (("Iași", 700), ("Pașcani", 705))),
    ("Ilfov", (("Voluntari", 77), ("Otopeni", 75), ("Buftea", 70))),
    ("Maramureș", (("Baia Mare", 430), ("Sighetu Marmației", 435))),
    ("Mehedinți", (("Drobeta-Turnu Severin", 220),)),
    ("Mureș", (("Târgu Mureș", 540), ("Sighișoara", 545), ("Târnăveni", 545))),
    ("Neamț", (("Piatra Neamț", 610), ("Târgu Neamț", 615))),
    ("Prahova", (("Ploiești", 100), ("Câmpina", 105), ("Sinaia", 106))),
    ("Sibiu", (("Sibiu", 550), ("Mediaș", 551))),
    ("Suceava", (("Suceava", 720), ("Fălticeni", 725), ("Rădăuți", 725))),
    ("Timiș", (("Timișoara", 300), ("Lugoj", 305))),
    ("Tulcea", (("Tulcea", 820), ("Măcin", 825))),
    ("Vâlcea", (("Râmnicu Vâlcea", 240), ("Băile Olănești", 245))),
)
# (country, language, street names, ((city, lowest, highest postal code), ...), postal format,
#  mobile prefix, digits after it)
_FOREIGN = (
    (
        "DE",
        "en",
        ("Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Lindenallee"),
        (("Berlin", 10115, 14199), ("München", 80331, 81929), ("Köln", 50667, 51149)),
        "{:05d}",
        "+4915",
        9,
    ),
    (
        "IT",
        "en",
        ("Via Giuseppe Garibaldi", "Via Roma", "Corso Vittorio Emanuele II"),
        (("Roma", 118, 199), ("Milano", 20121, 20162), ("Torino", 10121, 10156)),
        "{:05d}",
        "+393",
        9,
    ),
    (
        "MD",
        "ro",
        ("Str. Ștefan cel Mare și Sfânt", "Bd. Dacia", "Str. Alexei Mateevici"),
        (("Chișinău", 2001, 2075), ("Bălți", 3100, 3121)),
        "MD-{:04d}",
        "+3736",
        7,
    ),
)
_RO_MOBILE_PREFIXES = ("+4072", "+4073", "+4074", "+4075", "+4076", "+4077", "+4078", "+4079")
_NOTIFY = ("email", "sms", "both", "none")
_NOTIFY_WEIGHTS = (45, 70, 90, 100)  # cumulative
_CNP_WEIGHTS = (2, 7, 9, 1, 4, 6, 3, 5, 8, 2, 7, 9)
_CNP_COUNTIES = (*range(1, 47), 51, 52)
_CUI_WEIGHTS = (7, 5, 3, 2, 1, 7, 5, 3, 2)
_TRANSLITERATION = str.maketrans("ăâîșțĂÂÎȘȚ", "aaistAAIST")

# Monthly prices are net of VAT, in bani.
_MOBILE_PLANS = (
    ("Abonament Mobil Nelimitat 5G", 4950),
    ("Abonament Mobil Start 10 GB", 2479),
    ("Abonament Mobil Smart 30 GB", 3306),
    ("Abonament Mobil Business Pro 50 GB", 4132),
    ("Abonament Mobil Familie 4 SIM-uri", 8264),
)
_FIXED_PLANS = (
    ("Abonament Internet Fix Fibră 500 Mbps", 3306),
    ("Abonament Internet Fix Fibră 1 Gbps", 4132),
)
_TV_PLANS = (("Abonament TV Digital Extra", 2479), ("Abonament TV Sport și Filme HD", 3719))
_DEVICES = (  # (model, price net of VAT in bani)
    ("Samsung Galaxy S25", 371_900),
    ("Samsung Galaxy A56", 165_200),
    ("iPhone 16 128 GB", 396_600),
    ("Xiaomi Redmi Note 14", 99_100),
    ("Google Pixel 9a", 206_600),
    ("Motorola moto g85", 107_400),
)


def _whole(upper_bounds: Sequence[int]) -> Callable[[random.Random], str]:
    """A quantity drawer for whole units (minutes, messages), mostly small, sometimes large."""
    return lambda rng: str(rng.randint(1, rng.choice(upper_bounds)))


def _thousandths(upper_bounds: Sequence[int]) -> Callable[[random.Random], str]:
    """A quantity drawer for volumes (GB, MB) with three decimals, e.g. "3.275"."""

    def draw(rng: random.Random) -> str:
        value = rng.randint(1, rng.choice(upper_bounds))
        return f"{value // 1000}.{value % 1000:03d}"

    return draw


# Bounds keep a typical monthly bill between a few tens and a few hundred lei.
_MINUTES = _whole((10, 40, 150))
_FEW_MINUTES = _whole((3, 8, 20))  # the expensive kinds: special numbers, non-EU roaming
_MESSAGES = _whole((5, 20, 60))
_GIGABYTES = _thousandths((1_000, 3_000, 10_000))
_MEGABYTES = _thousandths((20_000, 150_000, 800_000))
_FEW_MEGABYTES = _thousandths((5_000, 30_000, 150_000))
_ONCE = _whole((1, 1, 1, 2))
_INTERNATIONAL = (
    ("Germania", "0.3500"),
    ("Italia", "0.3500"),
    ("Spania", "0.3800"),
    ("Franța", "0.3800"),
    ("Regatul Unit", "0.6500"),
    ("Republica Moldova", "0.9500"),
    ("SUA", "0.2900"),
    ("Ungaria", "0.4200"),
    ("Turcia", "1.2000"),
)
_EU = ("Italia", "Spania", "Franța", "Germania", "Grecia", "Austria", "Bulgaria", "Ungaria")
_NON_EU = ("Elveția", "Turcia", "Serbia", "SUA", "Regatul Unit")
# (description, quantity drawer, unit price net of VAT, VAT class, span): span 0 bills the whole
# period, otherwise the service runs from a random day for at most `span` days.
_USAGE = (
    ("Minute naționale în afara abonamentului", _MINUTES, "0.0450", "standard", 0),
    ("Minute către rețele fixe naționale", _MINUTES, "0.0380", "standard", 0),
    ("Apeluri către numere cu tarif special (min)", _FEW_MINUTES, "1.5000", "standard", 0),
    ("SMS naționale", _MESSAGES, "0.0400", "standard", 0),
    ("SMS internaționale", _MESSAGES, "0.2500", "standard", 0),
    ("MMS", _MESSAGES, "0.2000", "standard", 0),
    ("Servicii SMS premium", _FEW_MINUTES, "0.8264", "standard", 0),
    ("Trafic date suplimentar (GB)", _GIGABYTES, "4.1322", "standard", 0),
    ("Opțiune Internet 10 GB extra", _ONCE, "8.2645", "standard", 1),
    ("Opțiune 100 minute internaționale", _ONCE, "12.3967", "standard", 1),
    ("Servicii internaționale scutite", _FEW_MINUTES, "2.5000", "exempt", 0),
    *(
        (f"Minute internaționale {country}", _MINUTES, price, "standard", 0)
        for country, price in _INTERNATIONAL
    ),
    *(
        (f"Roaming UE date (MB) – {country}", _MEGABYTES, "0.0041", "standard", 10)
        for country in _EU
    ),
    *(
        (f"Roaming UE apeluri efectuate (min) – {country}", _MINUTES, "0.0450", "standard", 10)
        for country in _EU
    ),
    *(
        (f"Roaming non-UE date (MB) – {country}", _FEW_MEGABYTES, "0.0500", "standard", 10)
        for country in _NON_EU
    ),
    *(
        (f"Roaming non-UE apeluri (min) – {country}", _FEW_MINUTES, "1.2000", "standard", 10)
        for country in _NON_EU
    ),
)


@dataclass(frozen=True)
class _Plan:
    """The stable part of a customer's bill."""

    subscriptions: tuple[tuple[str, int], ...]  # (description, monthly price in bani)
    device: tuple[str, int, int, int] | None  # (model, monthly instalment, term, phase)
    insured: bool
    press: bool
    water: bool
    loyalty: bool
    percent_off: bool


@dataclass(frozen=True)
class _Period:
    """The billed month: its days (ISO text) and, per VAT class, the rate in force each day."""

    month: int  # year * 12 + month - 1
    days: tuple[str, ...]
    rates: dict[str, tuple[str, ...]]


def vat_rate(vat_class: str, day: date) -> int:
    """The Romanian VAT rate, in percent, of a class of supply in force on ``day``.

    Classes: ``standard`` (19, then 21), ``reduced`` (9, then 11), ``books`` (5, then 11),
    ``exempt`` (0); the new rates apply from ``VAT_CHANGE`` (2025-08-01).
    """
    before, after = _VAT[vat_class]
    return after if day >= VAT_CHANGE else before


def cycle_info(cycle_id: str) -> dict[str, str]:
    """The ``cycle.json`` content of cycle ``YYYY-MM``, which bills the month before it."""
    match = re.fullmatch(r"((?:19|2\d)\d\d)-(0[1-9]|1[0-2])", cycle_id)
    if match is None:
        raise ValueError(f"cycle id must be YYYY-MM, got {cycle_id!r}")
    issue = date(int(match[1]), int(match[2]), 1)
    period_end = issue - timedelta(days=1)
    return {
        "cycle_id": cycle_id,
        "series": SERIES,
        "period_start": period_end.replace(day=1).isoformat(),
        "period_end": period_end.isoformat(),
        "issue_date": issue.isoformat(),
        "due_date": (issue + timedelta(days=PAYMENT_TERM_DAYS)).isoformat(),
        "currency": CURRENCY,
    }


def customer_id_width(customers: int) -> int:
    """Digits in the customer ids of a cycle of ``customers`` customers (at least 7)."""
    return max(7, len(str(customers)))


def synthetic_customer(
    cycle_id: str, seed: int, index: int, width: int = 7
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Customer number ``index`` (from 1) and its charges, exactly as ``write_cycle`` writes them.

    Returns the customers row and the charges rows as dicts keyed by column name.
    """
    period = _period(cycle_info(cycle_id))
    row, plan = _customer(seed, index, width)
    charges = _charges(row[0], plan, period, random.Random(f"{seed}:{cycle_id}:{index}"))
    return (
        dict(zip(CUSTOMER_COLUMNS, row, strict=True)),
        [dict(zip(CHARGE_COLUMNS, charge, strict=True)) for charge in charges],
    )


def write_cycle(
    out_dir: Path, cycle_id: str, customers: int, seed: int = 1, fmt: str = "csv"
) -> Path:
    """Write a synthetic cycle export to ``out_dir/<cycle_id>/`` and return that folder.

    Writes ``cycle.json`` plus ``customers`` and ``charges`` tables as ``.csv`` (UTF-8, header
    row, ``\\n`` line ends, minimal quoting) or ``.parquet`` (every column a string, row groups
    of about ``PARQUET_ROW_GROUP`` rows), streaming row by row. The same arguments always give
    byte-identical files; the customers depend on ``seed`` and ``customers`` only.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    if customers < 0:
        raise ValueError(f"customers must not be negative, got {customers}")
    info = cycle_info(cycle_id)
    period = _period(info)
    width = customer_id_width(customers)
    folder = Path(out_dir) / cycle_id
    folder.mkdir(parents=True, exist_ok=True)
    other = "parquet" if fmt == "csv" else "csv"
    for table in ("customers", "charges"):  # a stale table of the other format would shadow ours
        (folder / f"{table}.{other}").unlink(missing_ok=True)
    (folder / "cycle.json").write_text(
        json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n"
    )
    with ExitStack() as stack:
        customer_sink = _open_sink(stack, folder / f"customers.{fmt}", CUSTOMER_COLUMNS)
        charge_sink = _open_sink(stack, folder / f"charges.{fmt}", CHARGE_COLUMNS)
        for index in range(1, customers + 1):
            row, plan = _customer(seed, index, width)
            customer_sink((row,))
            charge_sink(_charges(row[0], plan, period, random.Random(f"{seed}:{cycle_id}:{index}")))
    return folder


def _open_sink(
    stack: ExitStack, path: Path, columns: Sequence[str]
) -> Callable[[Iterable[Sequence[str]]], None]:
    """A function appending rows to a new table file, closed when ``stack`` closes."""
    if path.suffix == ".csv":
        handle = stack.enter_context(path.open("w", encoding="utf-8", newline=""))
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        return writer.writerows
    schema = pa.schema([(column, pa.string()) for column in columns])
    writer = stack.enter_context(pq.ParquetWriter(path, schema))
    pending: list[Sequence[str]] = []

    def flush() -> None:
        if pending:
            arrays = [pa.array(values, pa.string()) for values in zip(*pending, strict=True)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            pending.clear()

    def write(rows: Iterable[Sequence[str]]) -> None:
        pending.extend(rows)
        if len(pending) >= PARQUET_ROW_GROUP:
            flush()

    stack.callback(flush)  # runs before the writer closes (last in, first out)
    return write


def _period(info: dict[str, str]) -> _Period:
    start, end = (date.fromisoformat(info[key]) for key in ("period_start", "period_end"))
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    return _Period(
        month=start.year * 12 + start.month - 1,
        days=tuple(day.isoformat() for day in days),
        rates={cls: tuple(str(vat_rate(cls, day)) for day in days) for cls in _VAT},
    )


def _customer(seed: int, index: int, width: int) -> tuple[list[str], _Plan]:
    """Customer ``index`` of ``seed``: its customers row (in column order) and its plan."""
    rng = random.Random(f"{seed}:{index}")
    company = rng.random() < 0.15
    if company:
        words = rng.choice(_COMPANY_NAMES)
        name = f"{words} {rng.choice(_LEGAL_FORMS)}"
        if rng.random() < 0.3:
            name = name.upper()
        tax_id = _cui(rng)
        email = f"{rng.choice(_COMPANY_MAILBOXES)}@{_ascii(words)}.ro"
    else:
        male = rng.random() < 0.5
        first = rng.choice(_MALE_NAMES if male else _FEMALE_NAMES)
        last = rng.choice(_SURNAMES)
        name = f"{first} {last}"
        tax_id = _cnp(rng, male) if rng.random() < 0.3 else ""
        email = _personal_email(rng, first, last)
    if rng.random() < 0.01:
        street, city, county, postal_code, country, language, phone = _foreign_address(rng)
    else:
        street, city, county, postal_code = _romanian_address(rng)
        country, language = "RO", "ro" if rng.random() < 0.85 else "en"
        if rng.random() < 0.01:
            *_, mobile, digits = rng.choice(_FOREIGN)
            phone = _digits(rng, mobile, digits)
        else:
            phone = _digits(rng, rng.choice(_RO_MOBILE_PREFIXES), 7)
    notify = _NOTIFY[_weighted_index(rng, _NOTIFY_WEIGHTS)]
    # Every customer has the contact its notify preference needs; the rest sometimes lack it:
    # about 8 % of all customers have no e-mail address and 5 % no phone number.
    if notify not in ("email", "both") and rng.random() < 0.08 / 0.35:
        email = ""
    if notify not in ("sms", "both") and rng.random() < 0.05 / 0.55:
        phone = ""
    delivery = "paper" if rng.random() < 0.2 else "electronic"
    has_mailing_address = rng.random() < (0.4 if delivery == "paper" else 0.025)
    paper = _romanian_address(rng) if has_mailing_address else ("", "", "", "")
    row = [
        f"C{index:0{width}d}",
        name,
        tax_id,
        street,
        city,
        county,
        postal_code,
        country,
        phone,
        email,
        language,
        delivery,
        notify,
        *paper,
    ]
    return row, _plan(rng, company)


def _plan(rng: random.Random, company: bool) -> _Plan:
    subscriptions = [rng.choice(_MOBILE_PLANS)]
    if rng.random() < 0.3:
        subscriptions.append(rng.choice(_FIXED_PLANS))
    if rng.random() < 0.2:
        subscriptions.append(rng.choice(_TV_PLANS))
    device = None
    if rng.random() < 0.35:
        model, price = rng.choice(_DEVICES)
        term = rng.choice((12, 24, 36))
        device = (model, (price + term // 2) // term, term, rng.randrange(term + 6))
    return _Plan(
        subscriptions=tuple(subscriptions),
        device=device,
        insured=rng.random() < 0.3,
        press=rng.random() < 0.08,
        water=company and rng.random() < 0.2,
        loyalty=rng.random() < 0.2,
        percent_off=rng.random() < 0.15,
    )


def _charges(
    customer_id: str, plan: _Plan, period: _Period, rng: random.Random
) -> list[tuple[str, ...]]:
    """One cycle's charges rows of a customer: 3 to 40 lines with a positive invoice total.

    The standard-rate base stays positive because every subscription costs more than 16.67 and
    the discounts are at most 10.00 + 10 % of the main subscription + 5.00.
    """
    last = len(period.days) - 1
    rows: list[tuple[str, ...]] = []

    def line(
        description: str, quantity: str, price: str, vat_class: str, start: int = 0, end: int = last
    ) -> None:
        rows.append(
            (
                customer_id,
                description,
                quantity,
                price,
                period.rates[vat_class][end],
                period.days[start],
                period.days[end],
            )
        )

    for description, price in plan.subscriptions:
        line(description, "1", _money(price), "standard")
    if plan.device is not None:
        model, instalment, term, phase = plan.device
        number = (period.month + phase) % (term + 6) + 1  # then six months without a device
        if number <= term:
            line(f"Rată telefon {model} {number}/{term}", "1", _money(instalment), "standard")
            if plan.insured:
                line("Asigurare telefon (scutită de TVA)", "1", "9.90", "exempt")
    if plan.press:
        line("Abonament presă digitală și e-book", "1", "16.50", "books")
    if plan.water:
        line("Apă potabilă dozator birou (bidon 19 l)", str(rng.randint(1, 8)), "11.50", "reduced")
    if plan.loyalty:
        line("Discount fidelitate", "1", "-10.00", "standard")
    if plan.percent_off:
        line(
            "Reducere 10% abonament",
            "1",
            _money(-((plan.subscriptions[0][1] + 5) // 10)),
            "standard",
        )
    if rng.random() < 0.03:
        line("Credit compensare întrerupere serviciu", "1", "-5.00", "standard")
    wanted = rng.randint(3, 40)
    usage = rng.sample(_USAGE, max(0, wanted - len(rows)))
    for description, quantity, price, vat_class, span in usage:
        if span:
            start = rng.randint(0, last)
            line(
                description,
                quantity(rng),
                price,
                vat_class,
                start,
                min(last, start + rng.randrange(span)),
            )
        else:
            line(description, quantity(rng), price, vat_class)
    return rows


def _romanian_address(rng: random.Random) -> tuple[str, str, str, str]:
    """(street, city, county, postal code) somewhere in Romania; a fifth are in București."""
    street = f"{rng.choice(_STREETS)} nr. {rng.randint(1, 250)}"
    if rng.random() < 0.5:
        street += f", bl. {rng.choice('ABCDGHM')}{rng.randint(1, 40)}"
        if rng.random() < 0.5:
            street += f", sc. {rng.randint(1, 4)}, et. {rng.randint(1, 10)}"
        street += f", ap. {rng.randint(1, 120)}"
    if rng.random() < 0.2:
        sector = rng.randint(1, 6)
        return f"{street}, sector {sector}", "București", "București", _digits(rng, f"0{sector}", 4)
    county, cities = rng.choice(_COUNTIES)
    city, prefix = rng.choice(cities)
    return street, city, county, _digits(rng, f"{prefix:03d}", 3)


def _foreign_address(rng: random.Random) -> tuple[str, str, str, str, str, str, str]:
    """(street, city, county, postal code, country, language, phone) outside Romania."""
    country, language, streets, cities, postal_format, mobile, digits = rng.choice(_FOREIGN)
    city, lowest, highest = rng.choice(cities)
    street = f"{rng.choice(streets)} {rng.randint(1, 120)}"
    postal_code = postal_format.format(rng.randint(lowest, highest))
    return street, city, "", postal_code, country, language, _digits(rng, mobile, digits)


def _personal_email(rng: random.Random, first: str, last: str) -> str:
    given, family = _ascii(first).replace("-", ""), _ascii(last)
    local = rng.choice(
        (
            f"{given}.{family}",
            f"{given}{family}",
            f"{family}.{given}",
            f"{given}_{family}",
            f"{given[0]}{family}",
        )
    )
    if rng.random() < 0.4:
        local += str(rng.randint(1, 99))
    return f"{local}@{_MAIL_DOMAINS[_weighted_index(rng, _MAIL_DOMAIN_WEIGHTS)]}"


def _cnp(rng: random.Random, male: bool) -> str:
    """A valid CNP of an adult born 1940-2006 (sex digit 1/2 before 2000, 5/6 after)."""
    year, month = rng.randint(1940, 2006), rng.randint(1, 12)
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    sex = (1 if male else 2) + (4 if year >= 2000 else 0)
    county = rng.choice(_CNP_COUNTIES)
    body = f"{sex}{year % 100:02d}{month:02d}{day:02d}{county:02d}{rng.randint(1, 999):03d}"
    check = sum(int(digit) * weight for digit, weight in zip(body, _CNP_WEIGHTS, strict=True)) % 11
    return body + ("1" if check == 10 else str(check))


def _cui(rng: random.Random) -> str:
    """A valid CUI of 7 to 9 digits (control key 753217532, check = sum * 10 % 11, 10 -> 0)."""
    length = rng.choice((6, 7, 7, 8))
    body = str(rng.randint(10 ** (length - 1), 10**length - 1))
    total = sum(int(d) * w for d, w in zip(body.rjust(9, "0"), _CUI_WEIGHTS, strict=True))
    return body + str(total * 10 % 11 % 10)


def _digits(rng: random.Random, prefix: str, count: int) -> str:
    return f"{prefix}{rng.randrange(10**count):0{count}d}"


def _weighted_index(rng: random.Random, cumulative: Sequence[int]) -> int:
    draw = rng.randrange(cumulative[-1])
    return next(i for i, bound in enumerate(cumulative) if draw < bound)


def _ascii(text: str) -> str:
    """Lower-case ASCII words joined by hyphens: "Țara Bârsei" -> "tara-barsei"."""
    return re.sub(r"[^a-z0-9]+", "-", text.translate(_TRANSLITERATION).lower()).strip("-")


def _money(bani: int) -> str:
    sign = "-" if bani < 0 else ""
    return f"{sign}{abs(bani) // 100}.{abs(bani) % 100:02d}"
