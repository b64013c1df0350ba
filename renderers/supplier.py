"""The issuing company's details, read from a JSON file (default: `renderers/supplier.json`).

Keys: name, cui, trade_register, address, iban, bank, share_capital (required, non-empty text);
email, phone, website (optional text); exemption_ground (optional: one text for both languages,
or {"ro": ..., "en": ...}), the legal ground printed under the table for 0 % VAT lines;
postal_address (optional: {"street", "city", "county", "postal_code", "country"}, country RO if
left out), the address as e-Factura needs it, in parts (the printed `address` stays one text).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from billing.domain.errors import ConfigurationError
from billing.domain.model import Address, Supplier
from billing.domain.validation import county_code, valid_cui
from renderers.labels import LABELS

DEFAULT_PATH = Path(__file__).with_name("supplier.json")
REQUIRED_KEYS = ("name", "cui", "trade_register", "address", "iban", "bank", "share_capital")
OPTIONAL_KEYS = ("email", "phone", "website")
LANGUAGES = tuple(LABELS)
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


@dataclass(frozen=True, slots=True)
class SupplierProfile(Supplier):
    """A `Supplier` plus the exemption ground per language ("" prints the statutory default)."""

    exemption_ground_ro: str = ""
    exemption_ground_en: str = ""
    postal_address: Address | None = None


def exemption_ground(supplier: Supplier, language: str) -> str:
    """The legal ground printed under the table for 0 % lines: the supplier file's, else the
    statutory default, in the customer's language."""
    configured = ""
    if isinstance(supplier, SupplierProfile):
        configured = (
            supplier.exemption_ground_en if language == "en" else supplier.exemption_ground_ro
        )
    return configured or LABELS[language].default_exemption_ground


def valid_iban(iban: str) -> bool:
    """An IBAN's shape and its ISO 13616 mod-97 check digits."""
    if not _IBAN.fullmatch(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def load_supplier(path: Path | None = None) -> Supplier:
    """Read and validate the supplier file; `ConfigurationError` names the file and the key."""
    path = path or DEFAULT_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: supplier file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the supplier file: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: the supplier file must hold a JSON object")
    try:
        return _profile(data)
    except ValueError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None


def _profile(data: dict) -> SupplierProfile:
    unknown = sorted(
        set(data) - {*REQUIRED_KEYS, *OPTIONAL_KEYS, "exemption_ground", "postal_address"}
    )
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    fields = {key: _text(data, key, required=True) for key in REQUIRED_KEYS}
    fields |= {key: _text(data, key, required=False) for key in OPTIONAL_KEYS}
    if not valid_cui(fields["cui"]):
        raise ValueError(f"cui: {fields['cui']!r} is not a valid Romanian CUI")
    fields["iban"] = fields["iban"].replace(" ", "").upper()
    if not valid_iban(fields["iban"]):
        raise ValueError(f"iban: {fields['iban']!r} is not a valid IBAN (check digits)")
    grounds = _exemption_grounds(data.get("exemption_ground", ""))
    return SupplierProfile(
        **fields, exemption_ground_ro=grounds["ro"], exemption_ground_en=grounds["en"],
        postal_address=_postal_address(data.get("postal_address")),
    )  # fmt: skip


ADDRESS_KEYS = ("street", "city", "county", "postal_code")


def _postal_address(value: object) -> Address | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("postal_address: must be an object with " + ", ".join(ADDRESS_KEYS))
    unknown = sorted(set(value) - {*ADDRESS_KEYS, "country"})
    if unknown:
        raise ValueError(f"postal_address: unknown key {unknown[0]!r}")
    parts = {key: _text(value, key, required=True) for key in ADDRESS_KEYS}
    country = _text(value, "country", required=False).upper() or "RO"
    if country == "RO" and county_code(parts["county"]) is None:
        raise ValueError(f"postal_address: county {parts['county']!r} is not a Romanian county")
    return Address(**parts, country=country)


def _text(data: dict, key: str, *, required: bool) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"missing key {key!r}" if key not in data else f"{key}: is empty")
    return value.strip()


def _exemption_grounds(value: object) -> dict[str, str]:
    if isinstance(value, str):
        return dict.fromkeys(LANGUAGES, value.strip())
    if isinstance(value, dict) and set(value) <= set(LANGUAGES):
        return {lang: _text(value, lang, required=False) for lang in LANGUAGES}
    raise ValueError('exemption_ground: must be text or {"ro": text, "en": text}')
