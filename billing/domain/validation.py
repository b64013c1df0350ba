"""Field rules of contract 1. Each check returns problems instead of raising, so one bad row
is quarantined with its file, row, column and reason while the rest of the cycle goes on.

Reason codes (stable: the quarantine report and tests use them):
  missing, invalid_id, invalid_text, duplicate, invalid_tax_id, invalid_postal_code,
  invalid_country, invalid_county, invalid_choice, incomplete_paper_address,
  unknown_customer, customer_quarantined, invalid_charges, no_charges, invalid_decimal,
  invalid_vat_rate, invalid_date, invalid_service_period, malformed_row, invalid_encoding,
  too_long
Flags that never withhold an invoice (README.md, "Reason codes", says what each means):
  invalid_email, invalid_phone (the notice falls back to another channel),
  unprintable_text (the PDF prints a replacement character; the ledger keeps the text)
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from billing.domain.model import Address, Charge, Customer, Cycle, Problem
from billing.domain.vat import rates_in_period

CUSTOMER_COLUMNS = (
    "customer_id", "name", "tax_id", "street", "city", "county", "postal_code", "country",
    "phone", "email", "language", "delivery", "notify",
    "paper_street", "paper_city", "paper_county", "paper_postal_code",
)  # fmt: skip
REQUIRED_CUSTOMER_COLUMNS = (
    "customer_id",
    "name",
    "street",
    "city",
    "postal_code",
    "delivery",
    "notify",
)
CHARGE_COLUMNS = (
    "customer_id", "description", "quantity", "unit_price", "vat_rate", "service_start", "service_end",
)  # fmt: skip
REQUIRED_CHARGE_COLUMNS = CHARGE_COLUMNS[:5]

# Longest text the invoice layout prints without cutting (characters).
TEXT_LIMITS = {"name": 150, "street": 120, "paper_street": 120, "email": 254, "description": 400}

LANGUAGES = ("ro", "en")
DELIVERIES = ("electronic", "paper")
NOTIFY_CHOICES = ("email", "sms", "both", "none")

# Romanian counties (judete) and Bucharest, with their ISO 3166-2:RO codes (e-Factura uses them).
RO_COUNTIES = {
    "Alba": "AB", "Arad": "AR", "Argeș": "AG", "Bacău": "BC", "Bihor": "BH",
    "Bistrița-Năsăud": "BN", "Botoșani": "BT", "Brașov": "BV", "Brăila": "BR", "Buzău": "BZ",
    "Caraș-Severin": "CS", "Călărași": "CL", "Cluj": "CJ", "Constanța": "CT", "Covasna": "CV",
    "Dâmbovița": "DB", "Dolj": "DJ", "Galați": "GL", "Giurgiu": "GR", "Gorj": "GJ",
    "Harghita": "HR", "Hunedoara": "HD", "Ialomița": "IL", "Iași": "IS", "Ilfov": "IF",
    "Maramureș": "MM", "Mehedinți": "MH", "Mureș": "MS", "Neamț": "NT", "Olt": "OT",
    "Prahova": "PH", "Satu Mare": "SM", "Sălaj": "SJ", "Sibiu": "SB", "Suceava": "SV",
    "Teleorman": "TR", "Timiș": "TM", "Tulcea": "TL", "Vaslui": "VS", "Vâlcea": "VL",
    "Vrancea": "VN", "București": "B",
}  # fmt: skip

ISO_COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW""".split()
)

_CEDILLA_TO_COMMA = str.maketrans({"ş": "ș", "Ş": "Ș", "ţ": "ț", "Ţ": "Ț"})
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Bidirectional controls reorder what a reader sees without changing what is stored (the
# "Trojan Source" spoof, CVE-2021-42574): ALM, LRM, RLM, the embeddings and overrides LRE RLE
# PDF LRO RLO, and the isolates LRI RLI FSI PDI. A name or an address never needs them.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_STRIP_BIDI = str.maketrans(dict.fromkeys(BIDI_CONTROLS))
# One pass for both (normalize_text runs on every field of every row).
_ROMANIAN_WITHOUT_BIDI = str.maketrans(
    {**{chr(k): v for k, v in _CEDILLA_TO_COMMA.items()}, **dict.fromkeys(BIDI_CONTROLS)}
)
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SERIES = re.compile(r"[A-Z]{1,10}")
_CYCLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_DECIMAL = re.compile(r"[+-]?[0-9]{1,12}(?:\.[0-9]{1,6})?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RO_POSTAL = re.compile(r"[0-9]{6}")
_POSTAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{1,9}")


UNPRINTABLE = "unprintable_text"
DESCRIPTION_MEMO = 100_000  # distinct charge texts a validator remembers (memory stays bounded)

# The first character of a text that the invoice's font cannot draw, or None. The renderer owns
# the font (renderers.fonts.undrawable); staging passes its check in, so the domain stays pure.
# Such a text is still invoiced (the PDF prints a replacement character), only flagged.
Undrawable = Callable[[str], str | None]


def draws_everything(_text: str) -> str | None:
    """An `Undrawable` for rules without a font: every character can be drawn."""
    return None


def normalize_text(value: str) -> str:
    """NFC, cedilla s/t to comma-below (the correct Romanian letters), bidirectional controls
    removed, whitespace folded."""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value).translate(_ROMANIAN_WITHOUT_BIDI)
    return " ".join(value.split())


def has_control(value: str) -> bool:
    """Control characters left after normalize_text (which folds tabs and line breaks)."""
    return _CONTROL.search(value) is not None


def text_problem(value: str, limit: int = 200) -> tuple[str, str] | None:
    """(reason, detail) when a text field cannot go on an invoice: bytes that were not UTF-8,
    control characters, or too long to print. Caught here, before a number is spent on it.
    A character the font cannot draw is not a problem here but a flag (`unprintable_flag`)."""
    if len(value) > limit:
        return "too_long", f"{len(value)} characters, at most {limit}"
    if value.isascii():
        return None if not has_control(value) else ("invalid_text", "control characters")
    if _UNDECODABLE.search(value):
        return "invalid_encoding", "bytes that are not UTF-8"
    if has_control(value):
        return "invalid_text", "control characters"
    return None


def unprintable_flag(value: str, undrawable: Undrawable) -> tuple[str, str] | None:
    """("unprintable_text", detail) when the invoice font cannot draw a character of `value`:
    the invoice is still issued, its PDF shows a replacement, and ops see the flag."""
    # printable ASCII is in every invoice font, and ASCII controls are invalid_text already
    if value.isascii() or (char := undrawable(value)) is None:
        return None
    return UNPRINTABLE, f"U+{ord(char):04X} is printed as a replacement character"


def _fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.translate(_CEDILLA_TO_COMMA))
    return "".join(c for c in decomposed if c.isalnum()).lower()


_COUNTY_LOOKUP = {_fold(name): code for name, code in RO_COUNTIES.items()} | {
    code.lower(): code for code in RO_COUNTIES.values()
}


def county_code(county: str) -> str | None:
    """ISO 3166-2:RO code of a county written with or without diacritics, or None."""
    folded = _fold(county)
    for prefix in ("judetul", "jud", "municipiul", "mun"):
        if folded.startswith(prefix) and folded[len(prefix) :] in _COUNTY_LOOKUP:
            folded = folded[len(prefix) :]
    if re.fullmatch(r"sector[1-6]", folded):
        return "B"
    return _COUNTY_LOOKUP.get(folded)


def valid_cnp(cnp: str) -> bool:
    """A Romanian personal numeric code: 13 digits, a real birth date, the control digit."""
    if not re.fullmatch(r"[1-9][0-9]{12}", cnp):
        return False
    century = {"1": 1900, "2": 1900, "3": 1800, "4": 1800, "5": 2000, "6": 2000}.get(cnp[0])
    year = int(cnp[1:3])
    candidates = [century + year] if century else [1900 + year, 2000 + year]
    if not any(_is_date(y, int(cnp[3:5]), int(cnp[5:7])) for y in candidates):
        return False
    if not (1 <= int(cnp[7:9]) <= 52 or cnp[7:9] == "70"):
        return False
    total = sum(int(d) * int(w) for d, w in zip(cnp[:12], "279146358279", strict=True))
    control = total % 11
    return int(cnp[12]) == (1 if control == 10 else control)


def valid_cui(cui: str) -> bool:
    """A Romanian company fiscal code (CUI/CIF), with or without the RO prefix."""
    digits = cui.upper().removeprefix("RO").strip()
    if not re.fullmatch(r"[1-9][0-9]{1,9}", digits):
        return False
    body, control = digits[:-1].zfill(9), int(digits[-1])
    total = sum(int(d) * int(w) for d, w in zip(body, "753217532", strict=True))
    expected = total * 10 % 11
    return control == (0 if expected == 10 else expected)


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def parse_date(value: str) -> date | None:
    """An ISO date (YYYY-MM-DD) or None."""
    if not _ISO_DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_decimal(value: str) -> Decimal | None:
    """A plain decimal with a dot (no thousands separators, no exponent), or None."""
    return Decimal(value) if _DECIMAL.fullmatch(value) else None


def valid_email(value: str) -> bool:
    return len(value) <= 254 and bool(_EMAIL.fullmatch(value)) and len(value.split("@")[0]) <= 64


def valid_phone(value: str) -> bool:
    return bool(_E164.fullmatch(value))


def validate_cycle(
    data: object, expected_id: str, file: str = "cycle.json"
) -> tuple[Cycle | None, list[str]]:
    """Validate a parsed cycle.json; returns the cycle or the list of what is wrong with it."""
    if not isinstance(data, dict):
        return None, ["the file must hold a JSON object"]
    errors: list[str] = []

    def text(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{key}: missing")
            return ""
        return value.strip()

    cycle_id, series, currency = text("cycle_id"), text("series"), text("currency")
    if cycle_id and cycle_id != expected_id:
        errors.append(f"cycle_id: {cycle_id!r} does not match the folder {expected_id!r}")
    if cycle_id and not _CYCLE_ID.fullmatch(cycle_id):
        errors.append(f"cycle_id: {cycle_id!r} may hold only letters, digits, '.', '_', '-'")
    if series and not _SERIES.fullmatch(series):
        errors.append(f"series: {series!r} must be 1 to 10 capital letters")
    if currency and currency != "RON":
        errors.append(f"currency: {currency!r} is not supported (RON only)")
    dates = {}
    for key in ("period_start", "period_end", "issue_date", "due_date"):
        raw = text(key)
        if raw:
            dates[key] = parse_date(raw)
            if dates[key] is None:
                errors.append(f"{key}: {raw!r} is not a date (YYYY-MM-DD)")
    for later, earlier, message in (
        ("period_end", "period_start", "period_end: before period_start"),
        ("issue_date", "period_start", "issue_date: before the period it bills starts"),
        ("due_date", "issue_date", "due_date: before issue_date"),
    ):
        if dates.get(later) and dates.get(earlier) and dates[later] < dates[earlier]:
            errors.append(message)
    if errors:
        return None, errors
    return Cycle(cycle_id=cycle_id, series=series, currency=currency, **dates), []


class CustomerValidator:
    """Validates customers.* rows of one file; `undrawable` is the invoice font's check."""

    def __init__(self, file: str, undrawable: Undrawable = draws_everything) -> None:
        self.file = file
        self.undrawable = undrawable

    def validate(self, row: int, raw: dict[str, str]) -> tuple[Customer | None, list[Problem]]:
        get = {k: normalize_text(raw.get(k) or "") for k in CUSTOMER_COLUMNS}
        cid = get["customer_id"]
        problems: list[Problem] = []

        def problem(column: str, reason: str, detail: str = "") -> None:
            problems.append(Problem(self.file, row, cid, column, reason, detail))

        if not cid:
            problem("customer_id", "missing", "customer_id is empty")
        elif not _ID.fullmatch(cid):
            problem("customer_id", "invalid_id", "1-64 letters, digits, '.', '_', '-' expected")
        for column in ("name", "street", "city", "postal_code"):
            if not get[column]:
                problem(column, "missing", f"{column} is empty")
        unprintable = []
        for column, value in get.items():
            if found := text_problem(value, TEXT_LIMITS.get(column, 100)):
                problem(column, *found)
            elif found := unprintable_flag(value, self.undrawable):
                unprintable.append(Problem(self.file, row, cid, column, *found))
        country = get["country"].upper() or "RO"
        if country not in ISO_COUNTRIES:
            problem("country", "invalid_country", f"{get['country']!r} is not an ISO 3166-1 code")
        address = self._address(get, "", country, problem)
        paper = None
        paper_fields = [get[f"paper_{k}"] for k in ("street", "city", "county", "postal_code")]
        if any(paper_fields):
            absent = [c for c in ("paper_street", "paper_city", "paper_postal_code") if not get[c]]
            if absent:
                problem(
                    absent[0],
                    "incomplete_paper_address",
                    f"a paper address needs {', '.join(absent)} too",
                )
            else:
                paper = self._address(get, "paper_", "RO", problem)
        tax_id = get["tax_id"].replace(" ", "").upper()
        if tax_id and not (valid_cnp(tax_id) or valid_cui(tax_id)):
            problem("tax_id", "invalid_tax_id", f"{tax_id!r} is neither a valid CNP nor CUI")
        language = get["language"].lower() or "ro"
        for column, value, choices in (
            ("language", language, LANGUAGES),
            ("delivery", get["delivery"].lower(), DELIVERIES),
            ("notify", get["notify"].lower(), NOTIFY_CHOICES),
        ):
            if not value:
                problem(column, "missing", f"{column} is empty")
            elif value not in choices:
                problem(column, "invalid_choice", f"{value!r} is not one of {', '.join(choices)}")
        flags = []
        email, phone = get["email"], get["phone"].replace(" ", "")
        if email and not valid_email(email):
            flags.append("invalid_email")
        if phone and not valid_phone(phone):
            flags.append("invalid_phone")
        if unprintable:
            flags.append(UNPRINTABLE)
        if problems:
            return None, problems
        customer = Customer(
            customer_id=cid,
            name=get["name"],
            tax_id=tax_id,
            address=address,
            phone=phone,
            email=email,
            language=language,
            delivery=get["delivery"].lower(),
            notify=get["notify"].lower(),
            paper_address=paper,
            contact_flags=tuple(flags),
        )
        flagged = [
            Problem(self.file, row, cid, flag.removeprefix("invalid_"), flag, "notice falls back")
            for flag in flags
            if flag != UNPRINTABLE
        ]
        return customer, flagged + unprintable

    @staticmethod
    def _address(get: dict[str, str], prefix: str, country: str, problem) -> Address:
        postal, county = get[f"{prefix}postal_code"], get[f"{prefix}county"]
        if postal:
            pattern = _RO_POSTAL if country == "RO" else _POSTAL
            if not pattern.fullmatch(postal):
                problem(
                    f"{prefix}postal_code",
                    "invalid_postal_code",
                    f"{postal!r} is not a postal code",
                )
        if country == "RO":
            if not county:
                problem(f"{prefix}county", "missing", "a Romanian address needs its county")
            elif county_code(county) is None:
                problem(f"{prefix}county", "invalid_county", f"{county!r} is not a Romanian county")
        return Address(
            street=get[f"{prefix}street"], city=get[f"{prefix}city"], county=county,
            postal_code=postal, country=country,
        )  # fmt: skip


def check_paper_address(fields: dict[str, str]) -> tuple[Address | None, list[Problem]]:
    """A mailing address a customer typed (keys `paper_street`, `paper_city`, `paper_county`,
    `paper_postal_code`), validated as contract 1 validates the export's paper address: the
    address, or None and the problems (file "form", row 0), one per field."""
    get = {f"paper_{k}": normalize_text(fields.get(f"paper_{k}") or "") for k in _PAPER_PARTS}
    problems: list[Problem] = []

    def problem(column: str, reason: str, detail: str = "") -> None:
        problems.append(Problem("form", 0, "", column, reason, detail))

    for column, value in get.items():
        if not value and column != "paper_county":
            problem(column, "missing", f"{column} is empty")
        elif found := text_problem(value, TEXT_LIMITS.get(column, 100)):
            problem(column, *found)
    address = CustomerValidator._address(get, "paper_", "RO", problem)
    return (None, problems) if problems else (address, [])


_PAPER_PARTS = ("street", "city", "county", "postal_code")


class ChargeValidator:
    """Validates charges.* rows of one file against the cycle's period and VAT rates;
    `undrawable` is the invoice font's check."""

    def __init__(self, file: str, cycle: Cycle, undrawable: Undrawable = draws_everything) -> None:
        self.file = file
        self.cycle = cycle
        self.undrawable = undrawable
        self._period_rates = rates_in_period(cycle.period_start, cycle.period_end)
        # Descriptions and amounts repeat from charge to charge: each distinct text is checked
        # and parsed once per file (the results are immutable).
        self._descriptions: dict[str, tuple[str, tuple[str, str] | None, tuple | None]] = {}
        self._decimals: dict[str, Decimal | None] = {}

    def _description(self, raw: str) -> tuple[str, tuple[str, str] | None, tuple | None]:
        """(normalized text, its problem, its unprintable flag), once per distinct text."""
        known = self._descriptions.get(raw)
        if known is None:
            text = normalize_text(raw)
            problem = text_problem(text, TEXT_LIMITS["description"]) if text else None
            flag = unprintable_flag(text, self.undrawable) if text and not problem else None
            known = (text, problem, flag)
            if len(self._descriptions) < DESCRIPTION_MEMO:
                self._descriptions[raw] = known
        return known

    def _decimal(self, text: str) -> Decimal | None:
        try:
            return self._decimals[text]
        except KeyError:
            found = parse_decimal(text)
            if len(self._decimals) < DESCRIPTION_MEMO:
                self._decimals[text] = found
            return found

    def validate(self, row: int, raw: dict[str, str]) -> tuple[Charge | None, list[Problem]]:
        cid = (raw.get("customer_id") or "").strip()
        problems: list[Problem] = []

        def problem(column: str, reason: str, detail: str = "") -> None:
            problems.append(Problem(self.file, row, cid, column, reason, detail))

        if not cid:
            problem("customer_id", "missing", "customer_id is empty")
        description, found, flag = self._description(raw.get("description") or "")
        if not description:
            problem("description", "missing", "description is empty")
        elif found:
            problem("description", *found)
        numbers = {}
        for column in ("quantity", "unit_price", "vat_rate"):
            value = (raw.get(column) or "").strip()
            numbers[column] = self._decimal(value) if value else None
            if not value:
                problem(column, "missing", f"{column} is empty")
            elif numbers[column] is None:
                problem(column, "invalid_decimal", f"{value!r} is not a decimal like 1234.56")
        dates = {}
        for column in ("service_start", "service_end"):
            value = (raw.get(column) or "").strip()
            dates[column] = parse_date(value) if value else None
            if value and dates[column] is None:
                problem(column, "invalid_date", f"{value!r} is not a date (YYYY-MM-DD)")
        start, end = dates["service_start"], dates["service_end"]
        if start and end and end < start:
            problem("service_end", "invalid_service_period", f"{end} is before {start}")
        rate = numbers["vat_rate"]
        if rate is not None and not (start and end and end < start):
            allowed = (
                self._period_rates
                if not (start or end)
                else rates_in_period(start or end, end or start)
            )
            if rate not in allowed:
                shown = ", ".join(str(r) for r in sorted(allowed))
                problem(
                    "vat_rate",
                    "invalid_vat_rate",
                    f"{rate}% is not in force for {start or self.cycle.period_start} to "
                    f"{end or self.cycle.period_end} (in force: {shown})",
                )
            rate = rate.quantize(Decimal(1)) if rate == rate.to_integral_value() else rate
        if problems:
            return None, problems
        flagged = []
        if flag:
            flagged.append(Problem(self.file, row, cid, "description", *flag))
        return (
            Charge(
                customer_id=cid, description=description, quantity=numbers["quantity"],
                unit_price=numbers["unit_price"], vat_rate=rate, service_start=start,
                service_end=end, row=row,
            ),
            flagged,
        )  # fmt: skip
