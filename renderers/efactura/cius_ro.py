"""The national rules of the Romanian CIUS (ANAF's rule set 1.0.9) that an operator's invoices
meet, checked on the UBL XML itself (not on the invoice it was made from).

No package ships them, so each is written here from `../shared/INVOICE-RULES.md`, under the id
ANAF's validator reports it by (`[BR-RO-L150]` for the lengths of the 150-character family, as
ANAF's messages print them). Where ANAF's schematron writes a rule as a `report` (the county and
Bucharest sector codes), it fails the invoice here like any other rule: a validator that counts
only failed asserts lets those invoices through to be refused by ANAF.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lxml import etree

from billing.domain.validation import RO_COUNTIES

CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
UBL = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS = {"cac": CAC, "cbc": CBC, "ubl": UBL}

CIUS_RO_ID = "urn:cen.eu:en16931:2017#compliant#urn:efactura.mfinante.ro:CIUS-RO:1.0.1"
TYPE_CODES = ("380", "389", "384", "381", "751")
COUNTY_CODES = frozenset(f"RO-{code}" for code in RO_COUNTIES.values())
SECTORS = frozenset(f"SECTOR{n}" for n in range(1, 7))

SELLER = "cac:AccountingSupplierParty/cac:Party"
BUYER = "cac:AccountingCustomerParty/cac:Party"


@dataclass(frozen=True, slots=True)
class Breach:
    """One rule an XML breaks: the rule's id, what is wrong, and where (an XPath)."""

    rule: str
    message: str
    location: str = ""


Check = Callable[[etree._Element], Iterator[Breach]]
RULES: list[tuple[str, str]] = []  # (rule id, what it asks), in the order they are checked
_CHECKS: list[Check] = []


def rule(rule_id: str, asks: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        RULES.append((rule_id, asks))
        _CHECKS.append(check)
        return check

    return register


def check(root: etree._Element) -> list[Breach]:
    """Every CIUS-RO rule `root` (a parsed `Invoice`) breaks, in rule order."""
    return [breach for one in _CHECKS for breach in one(root)]


def _text(root: etree._Element, path: str) -> str:
    return " ".join(root.xpath(f"string({path})", namespaces=NS).split())


def _all(root: etree._Element, path: str) -> list[etree._Element]:
    return root.xpath(path, namespaces=NS)


def _where(element: etree._Element) -> str:
    return element.getroottree().getpath(element)


@rule("BR-RO-001", "the specification identifier (BT-24) is the CIUS-RO one, exactly")
def _customization(root):
    if _text(root, "cbc:CustomizationID") != CIUS_RO_ID:
        yield Breach("BR-RO-001", f"the specification identifier (BT-24) must be {CIUS_RO_ID}",
                     "/Invoice/cbc:CustomizationID")  # fmt: skip


@rule("BR-RO-010", "the invoice number (BT-1) holds at least one digit")
def _number_digit(root):
    if not re.search(r"[0-9]", _text(root, "cbc:ID")):
        yield Breach("BR-RO-010", "the invoice number (BT-1) must hold at least one digit",
                     "/Invoice/cbc:ID")  # fmt: skip


@rule("BR-RO-020", "the invoice type code (BT-3) is 380, 389, 384, 381 or 751")
def _type_code(root):
    if _text(root, "cbc:InvoiceTypeCode") not in TYPE_CODES:
        yield Breach("BR-RO-020", "the invoice type code (BT-3) must be one of "
                     + ", ".join(TYPE_CODES), "/Invoice/cbc:InvoiceTypeCode")  # fmt: skip


@rule("BR-RO-030", "a currency other than RON comes with the VAT accounting currency RON (BT-6)")
def _tax_currency(root):
    if (
        _text(root, "cbc:DocumentCurrencyCode") != "RON"
        and _text(root, "cbc:TaxCurrencyCode") != "RON"
    ):
        yield Breach("BR-RO-030", "an invoice not in RON must give RON as its VAT accounting "
                     "currency (BT-6)", "/Invoice/cbc:TaxCurrencyCode")  # fmt: skip


@rule("BR-RO-065", "the seller's VAT identifier (BT-31) or tax registration id (BT-32) is given")
def _seller_tax_id(root):
    if not _text(root, f"{SELLER}/cac:PartyTaxScheme/cbc:CompanyID"):
        yield Breach("BR-RO-065", "the seller's VAT identifier (BT-31) or tax registration "
                     "identifier (BT-32) must be given", f"/Invoice/{SELLER}")  # fmt: skip


def _address_rules(party: str, who: str, digit: str, street: str, city: str, county: str):
    address = f"{party}/cac:PostalAddress"

    @rule(f"BR-RO-08{digit}", f"the {who}'s address line 1 ({street}) is given")
    def _street(root):
        if not _text(root, f"{address}/cbc:StreetName"):
            yield Breach(f"BR-RO-08{digit}", f"the {who}'s address line 1 ({street}) must be given",
                         f"/Invoice/{address}/cbc:StreetName")  # fmt: skip

    @rule(f"BR-RO-09{digit}", f"the {who}'s city ({city}) is given")
    def _city(root):
        if not _text(root, f"{address}/cbc:CityName"):
            yield Breach(f"BR-RO-09{digit}", f"the {who}'s city ({city}) must be given",
                         f"/Invoice/{address}/cbc:CityName")  # fmt: skip

    @rule(f"BR-RO-11{int(digit) - 1}",
          f"in Romania the {who}'s county ({county}) is an ISO 3166-2:RO code")  # fmt: skip
    def _county(root):
        code = _text(root, f"{address}/cbc:CountrySubentity")
        if (
            _text(root, f"{address}/cac:Country/cbc:IdentificationCode") == "RO"
            and code not in COUNTY_CODES
        ):
            yield Breach(f"BR-RO-11{int(digit) - 1}", f"the {who}'s county ({county}) must be an ISO "
                         f"3166-2:RO code such as RO-AB or RO-B, not {code!r}",
                         f"/Invoice/{address}/cbc:CountrySubentity")  # fmt: skip

    @rule(f"BR-RO-10{int(digit) - 1}",
          f"in Bucharest (RO-B) the {who}'s city ({city}) is SECTOR1 .. SECTOR6")  # fmt: skip
    def _sector(root):
        in_bucharest = (
            _text(root, f"{address}/cac:Country/cbc:IdentificationCode") == "RO"
            and _text(root, f"{address}/cbc:CountrySubentity") == "RO-B"
        )
        city_name = _text(root, f"{address}/cbc:CityName")
        if in_bucharest and city_name not in SECTORS:
            yield Breach(f"BR-RO-10{int(digit) - 1}", f"in Bucharest the {who}'s city ({city}) must "
                         f"be SECTOR1 .. SECTOR6, not {city_name!r}",
                         f"/Invoice/{address}/cbc:CityName")  # fmt: skip


_address_rules(SELLER, "seller", "1", "BT-35", "BT-37", "BT-39")
_address_rules(BUYER, "buyer", "2", "BT-50", "BT-52", "BT-54")


@rule("BR-RO-120", "the buyer has a legal registration id (BT-47) or a VAT identifier (BT-48)")
def _buyer_id(root):
    if not (_text(root, f"{BUYER}/cac:PartyLegalEntity/cbc:CompanyID")
            or _text(root, f"{BUYER}/cac:PartyTaxScheme/cbc:CompanyID")):  # fmt: skip
        yield Breach("BR-RO-120", "the buyer must have a legal registration identifier (BT-47) "
                     "or a VAT identifier (BT-48); a consumer without a CNP is 0000000000000",
                     f"/Invoice/{BUYER}/cac:PartyLegalEntity")  # fmt: skip


# (rule, path of every element it limits, what the element is, longest allowed)
LENGTHS = (
    ("BR-RO-L200", "cbc:ID", "the invoice number (BT-1)", 200),
    ("BR-RO-L200", f"{SELLER}/cac:PartyLegalEntity/cbc:RegistrationName", "the seller name (BT-27)", 200),
    ("BR-RO-L200", f"{BUYER}/cac:PartyLegalEntity/cbc:RegistrationName", "the buyer name (BT-44)", 200),
    ("BR-RO-L150", f"{SELLER}/cac:PostalAddress/cbc:StreetName", "the seller address line 1 (BT-35)", 150),
    ("BR-RO-L150", f"{BUYER}/cac:PostalAddress/cbc:StreetName", "the buyer address line 1 (BT-50)", 150),
    ("BR-RO-L100", f"{SELLER}/cac:PostalAddress/cbc:AdditionalStreetName", "the seller address line 2 (BT-36)", 100),
    ("BR-RO-L100", f"{BUYER}/cac:PostalAddress/cbc:AdditionalStreetName", "the buyer address line 2 (BT-51)", 100),
    ("BR-RO-L100", f"{SELLER}/cac:PostalAddress/cac:AddressLine/cbc:Line", "the seller address line 3 (BT-162)", 100),
    ("BR-RO-L100", f"{BUYER}/cac:PostalAddress/cac:AddressLine/cbc:Line", "the buyer address line 3 (BT-163)", 100),
    ("BR-RO-L050", f"{SELLER}/cac:PostalAddress/cbc:CityName", "the seller city (BT-37)", 50),
    ("BR-RO-L050", f"{BUYER}/cac:PostalAddress/cbc:CityName", "the buyer city (BT-52)", 50),
    ("BR-RO-L020", f"{SELLER}/cac:PostalAddress/cbc:PostalZone", "the seller post code (BT-38)", 20),
    ("BR-RO-L020", f"{BUYER}/cac:PostalAddress/cbc:PostalZone", "the buyer post code (BT-53)", 20),
    ("BR-RO-L100", f"{SELLER}/cac:Contact/cbc:Name", "the seller contact point (BT-41)", 100),
    ("BR-RO-L100", f"{SELLER}/cac:Contact/cbc:Telephone", "the seller contact telephone (BT-42)", 100),
    ("BR-RO-L100", f"{SELLER}/cac:Contact/cbc:ElectronicMail", "the seller contact e-mail (BT-43)", 100),
    ("BR-RO-L100", f"{BUYER}/cac:Contact/cbc:Name", "the buyer contact point (BT-56)", 100),
    ("BR-RO-L100", f"{BUYER}/cac:Contact/cbc:Telephone", "the buyer contact telephone (BT-57)", 100),
    ("BR-RO-L100", f"{BUYER}/cac:Contact/cbc:ElectronicMail", "the buyer contact e-mail (BT-58)", 100),
    ("BR-RO-L100", "cac:InvoiceLine/cac:Item/cbc:Name", "an item name (BT-153)", 100),
    ("BR-RO-L200", "cac:InvoiceLine/cac:Item/cbc:Description", "an item description (BT-154)", 200),
    ("BR-RO-L300", "cac:InvoiceLine/cbc:Note", "an invoice line note (BT-127)", 300),
    ("BR-RO-L300", "cbc:Note", "an invoice note (BT-22)", 300),
    ("BR-RO-L300", "cac:PaymentTerms/cbc:Note", "the payment terms (BT-20)", 300),
    ("BR-RO-L140", "cac:PaymentMeans/cbc:PaymentID", "the remittance information (BT-83)", 140),
    ("BR-RO-L100", "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:TaxExemptionReason",
     "a VAT exemption reason (BT-120)", 100),
)  # fmt: skip


def _length_rule(rule_id: str, path: str, what: str, limit: int) -> None:
    @rule(rule_id, f"at most {limit} characters in {what}")
    def _length(root):
        for element in _all(root, path):
            length = len(" ".join("".join(element.itertext()).split()))
            if length > limit:
                yield Breach(rule_id, f"{what} may hold at most {limit} characters, not {length}",
                             _where(element))  # fmt: skip


for _length_args in LENGTHS:
    _length_rule(*_length_args)


@rule("BR-RO-A020", "at most 20 invoice notes (BG-1)")
def _notes(root):
    if (count := len(_all(root, "cbc:Note"))) > 20:
        yield Breach("BR-RO-A020", f"an invoice may have at most 20 notes (BG-1), not {count}",
                     "/Invoice/cbc:Note")  # fmt: skip


# (rule, path, what): amounts with at most two decimals
DECIMALS = (
    ("BR-DEC-RO-09", "cac:LegalMonetaryTotal/cbc:LineExtensionAmount", "the sum of line net amounts (BT-106)"),
    ("BR-DEC-RO-12", "cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount", "the total without VAT (BT-109)"),
    ("BR-DEC-RO-13", "cac:TaxTotal/cbc:TaxAmount", "the total VAT (BT-110)"),
    ("BR-DEC-RO-14", "cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount", "the total with VAT (BT-112)"),
    ("BR-DEC-RO-18", "cac:LegalMonetaryTotal/cbc:PayableAmount", "the amount due (BT-115)"),
    ("BR-DEC-RO-1009", "cac:TaxTotal/cac:TaxSubtotal/cbc:TaxableAmount", "a VAT category taxable amount (BT-116)"),
    ("BR-DEC-RO-1010", "cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount", "a VAT category tax amount (BT-117)"),
    ("BR-DEC-RO-23", "cac:InvoiceLine/cbc:LineExtensionAmount", "an invoice line net amount (BT-131)"),
)  # fmt: skip


def _decimals_rule(rule_id: str, path: str, what: str) -> None:
    @rule(rule_id, f"at most 2 decimals in {what}")
    def _decimals(root):
        for element in _all(root, path):
            fraction = (element.text or "").strip().partition(".")[2]
            if len(fraction) > 2:
                yield Breach(rule_id, f"{what} may have at most 2 decimals: {element.text!r}",
                             _where(element))  # fmt: skip


for _decimals_args in DECIMALS:
    _decimals_rule(*_decimals_args)
