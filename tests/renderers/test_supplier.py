"""The supplier file: the committed one is valid, and a broken one says what is wrong."""

from __future__ import annotations

import json

import pytest

from billing.domain.errors import ConfigurationError
from billing.domain.validation import valid_cui
from renderers.supplier import (
    DEFAULT_PATH,
    SupplierProfile,
    exemption_ground,
    load_supplier,
    valid_iban,
)


def write(tmp_path, **changes):
    data = json.loads(DEFAULT_PATH.read_text(encoding="utf-8")) | changes
    path = tmp_path / "supplier.json"
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}), "utf-8")
    return path


def test_the_committed_supplier_is_valid():
    supplier = load_supplier()
    assert supplier.name == "Telecom Exemplu SA"
    assert valid_cui(supplier.cui)
    assert valid_iban(supplier.iban)
    assert "București" in supplier.address
    assert exemption_ground(supplier, "ro").startswith("Scutit de TVA")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"iban": None}, "missing key 'iban'", id="missing key"),
        pytest.param({"bank": "  "}, "bank: is empty", id="empty value"),
        pytest.param({"share_capital": 25000000}, "share_capital: must be text", id="not text"),
        pytest.param({"cui": "RO18547291"}, "cui: 'RO18547291' is not a valid", id="bad CUI"),
        pytest.param({"iban": "RO17BTRLRONCRT0123456701"}, "not a valid IBAN", id="bad IBAN"),
        pytest.param({"banc": "x"}, "unknown key 'banc'", id="typo"),
        pytest.param({"exemption_ground": ["x"]}, "exemption_ground: must be", id="bad ground"),
    ],
)
def test_a_broken_supplier_file_names_the_key(tmp_path, changes, message):
    path = write(tmp_path, **changes)
    with pytest.raises(ConfigurationError) as raised:
        load_supplier(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_a_missing_or_unreadable_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="supplier file not found"):
        load_supplier(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{", "utf-8")
    with pytest.raises(ConfigurationError, match="cannot read the supplier file"):
        load_supplier(tmp_path / "bad.json")


def test_one_exemption_ground_serves_both_languages_and_none_leaves_the_default(tmp_path):
    single = load_supplier(write(tmp_path, exemption_ground="Scutit conform art. 292 alin. (2)"))
    assert isinstance(single, SupplierProfile)
    assert exemption_ground(single, "en") == "Scutit conform art. 292 alin. (2)"
    default = load_supplier(write(tmp_path, exemption_ground=None))
    assert exemption_ground(default, "en").startswith("VAT exempt under art. 292")
