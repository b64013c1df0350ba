"""An issued invoice as a UBL 2.1 `Invoice` under the Romanian CIUS (RO e-Factura).

`invoice_xml(invoice, supplier)` writes the XML from the ledger's snapshot of the invoice, the
same data the PDF shows: the supplier, the customer and their address (county as its ISO
3166-2:RO code, `SECTOR1`..`SECTOR6` as the city in Bucharest), every line with its billed
period, the VAT breakdown per rate (category `S`, or `E` with the exemption ground for 0 %),
the totals, the due date and the IBAN to pay into.

It is built as text in one pass, in the element order of the UBL 2.1 schema: a few hundred
elements an invoice, and the cycle run makes one for every invoice. The same invoice always
gives the same bytes (no time stamp, no generated id; amounts written as the ledger holds
them), so the write-once archive takes a re-run's XML as the same object.

What the XML cannot carry as the invoice has it is not mended here: it is written as it is and
the validation (`renderers.efactura.validation`) names the rule it breaks, so that an invoice
that cannot be reported is reported to ops, never silently changed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

from billing.domain.errors import ConfigurationError
from billing.domain.model import Address, Customer, IssuedInvoice, Supplier
from billing.domain.validation import county_code, valid_cnp, valid_cui
from renderers.supplier import exemption_ground

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:efactura.mfinante.ro:CIUS-RO:1.0.1"
INVOICE_TYPE = "380"  # commercial invoice (UNTDID 1001)
NO_CNP = "0000000000000"  # a consumer who gave no CNP (ANAF's B2C rule)
PAYMENT_MEANS = "42"  # payment to a bank account (UNCL 4461)
UNIT = "C62"  # "one": a unit of service (UN/ECE Recommendation 20)
ITEM_NAME_LIMIT = 100  # characters of an item name (BT-153) that CIUS-RO allows
EXEMPTION_REASON_LIMIT = 100  # BT-120

NAMESPACES = (
    ' xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"'
    ' xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"'
    ' xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"'
)
_BUCHAREST_POSTAL_CODE = re.compile(r"0([1-6])[0-9]{4}")
_SECTOR = re.compile(r"\bsector(?:ul)?\s*([1-6])\b", re.IGNORECASE)


def check_supplier(supplier: Supplier) -> Address:
    """The supplier's postal address in parts, which the XML needs; ConfigurationError when the
    supplier file gives none."""
    address = getattr(supplier, "postal_address", None)
    if address is None:
        raise ConfigurationError(
            "supplier file: postal_address (street, city, county, postal_code) is needed for "
            "the e-Factura XML"
        )
    return address


def invoice_xml(invoice: IssuedInvoice, supplier: Supplier) -> bytes:
    """The invoice's UBL 2.1 CIUS-RO XML, UTF-8."""
    seller_address = check_supplier(supplier)
    currency = invoice.currency
    money = _Money(currency)
    out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n', f"<Invoice{NAMESPACES}>"]
    add = out.append
    add(f"<cbc:CustomizationID>{CUSTOMIZATION_ID}</cbc:CustomizationID>")
    add(f"<cbc:ID>{_text(invoice.number)}</cbc:ID>")
    add(f"<cbc:IssueDate>{invoice.issue_date.isoformat()}</cbc:IssueDate>")
    add(f"<cbc:DueDate>{invoice.due_date.isoformat()}</cbc:DueDate>")
    add(f"<cbc:InvoiceTypeCode>{INVOICE_TYPE}</cbc:InvoiceTypeCode>")
    add(f"<cbc:DocumentCurrencyCode>{_text(currency)}</cbc:DocumentCurrencyCode>")
    if currency != "RON":  # BR-RO-030: VAT is accounted in RON
        add("<cbc:TaxCurrencyCode>RON</cbc:TaxCurrencyCode>")
    add(_period(invoice.period_start, invoice.period_end))
    add(_seller(supplier, seller_address))
    add(_buyer(invoice.customer))
    add(
        f"<cac:PaymentMeans><cbc:PaymentMeansCode>{PAYMENT_MEANS}</cbc:PaymentMeansCode>"
        f"<cbc:PaymentID>{_text(invoice.number)}</cbc:PaymentID>"
        f"<cac:PayeeFinancialAccount><cbc:ID>{_text(supplier.iban)}</cbc:ID>"
        f"<cbc:Name>{_text(supplier.name)}</cbc:Name></cac:PayeeFinancialAccount>"
        "</cac:PaymentMeans>"
    )
    add(f"<cac:TaxTotal>{money('TaxAmount', invoice.vat_total)}")
    for vat in invoice.vat:
        add(
            f"<cac:TaxSubtotal>{money('TaxableAmount', vat.base)}{money('TaxAmount', vat.vat)}"
            f"{_tax_category('TaxCategory', vat.rate, _exemption_reason(supplier, invoice))}"
            "</cac:TaxSubtotal>"
        )
    add("</cac:TaxTotal>")
    add(
        f"<cac:LegalMonetaryTotal>{money('LineExtensionAmount', invoice.net_total)}"
        f"{money('TaxExclusiveAmount', invoice.net_total)}"
        f"{money('TaxInclusiveAmount', invoice.total)}{money('PayableAmount', invoice.total)}"
        "</cac:LegalMonetaryTotal>"
    )
    for line in invoice.lines:
        quantity, price = line.quantity, line.unit_price
        if price < 0:  # a discount: the price may not be negative (BR-27), the quantity may
            quantity, price = -quantity, -price
        period = _period(line.service_start, line.service_end)
        name, description = _item_name(line.description)
        add(
            f"<cac:InvoiceLine><cbc:ID>{line.line_no}</cbc:ID>"
            f'<cbc:InvoicedQuantity unitCode="{UNIT}">{_number(quantity)}</cbc:InvoicedQuantity>'
            f"{money('LineExtensionAmount', line.net)}{period}<cac:Item>"
            + (f"<cbc:Description>{_text(description)}</cbc:Description>" if description else "")
            + f"<cbc:Name>{_text(name)}</cbc:Name>"
            f"{_tax_category('ClassifiedTaxCategory', line.vat_rate, '')}</cac:Item>"
            f"<cac:Price>{money('PriceAmount', price, exact=True)}</cac:Price></cac:InvoiceLine>"
        )
    add("</Invoice>\n")
    return "".join(out).encode("utf-8")


def buyer_identifier(customer: Customer) -> tuple[str, str | None]:
    """(legal registration id BT-47, VAT id BT-48 or None) of the customer: a company's CUI
    (its VAT id too when written with RO), a consumer's CNP, or 13 zeros for a consumer who
    gave none (BR-RO-120)."""
    tax_id = customer.tax_id.strip().upper()
    if tax_id and valid_cnp(tax_id):
        return tax_id, None
    if tax_id and valid_cui(tax_id):
        digits = tax_id.removeprefix("RO").strip()
        return digits, f"RO{digits}" if tax_id.startswith("RO") else None
    return NO_CNP, None


def is_company_tax_id(tax_id: str) -> bool:
    """Whether a tax id is a company's CUI rather than a person's CNP (or none): its invoice
    goes through the B2B upload."""
    tax_id = tax_id.strip().upper()
    return bool(tax_id) and not valid_cnp(tax_id) and valid_cui(tax_id)


def address_fields(address: Address) -> tuple[str, str]:
    """(city BT-37/52, country subdivision BT-39/54) as CIUS-RO wants them for a Romanian
    address: the county as `RO-XX`, and for Bucharest the sector as the city (from the postal
    code, whose second digit is the sector, or from "sector N" in the address). What cannot be
    coded is written as it is: the validation names the rule."""
    if address.country != "RO":
        return address.city, address.county
    code = county_code(address.county)
    if code is None:
        return address.city, address.county
    city = address.city
    if code == "B":
        if match := _BUCHAREST_POSTAL_CODE.fullmatch(address.postal_code):
            city = f"SECTOR{match[1]}"
        elif match := _SECTOR.search(f"{address.city} {address.street}"):
            city = f"SECTOR{match[1]}"
    return city, f"RO-{code}"


def _seller(supplier: Supplier, address: Address) -> str:
    contact = _group(
        "cac:Contact", (("cbc:Telephone", supplier.phone), ("cbc:ElectronicMail", supplier.email))
    )
    legal_form = f"Capital social {supplier.share_capital}"
    return (
        f"<cac:AccountingSupplierParty><cac:Party>{_address(address)}"
        f"<cac:PartyTaxScheme><cbc:CompanyID>{_text(supplier.cui)}</cbc:CompanyID>"
        "<cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>"
        f"<cac:PartyLegalEntity><cbc:RegistrationName>{_text(supplier.name)}</cbc:RegistrationName>"
        f"<cbc:CompanyID>{_text(supplier.trade_register)}</cbc:CompanyID>"
        f"<cbc:CompanyLegalForm>{_text(legal_form)}</cbc:CompanyLegalForm></cac:PartyLegalEntity>"
        f"{contact}</cac:Party></cac:AccountingSupplierParty>"
    )


def _buyer(customer: Customer) -> str:
    legal_id, vat_id = buyer_identifier(customer)
    tax_scheme = ""
    if vat_id:
        tax_scheme = (
            f"<cac:PartyTaxScheme><cbc:CompanyID>{vat_id}</cbc:CompanyID>"
            "<cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:PartyTaxScheme>"
        )
    return (
        f"<cac:AccountingCustomerParty><cac:Party>{_address(customer.address)}{tax_scheme}"
        f"<cac:PartyLegalEntity><cbc:RegistrationName>{_text(customer.name)}</cbc:RegistrationName>"
        f"<cbc:CompanyID>{legal_id}</cbc:CompanyID></cac:PartyLegalEntity>"
        "</cac:Party></cac:AccountingCustomerParty>"
    )


def _address(address: Address) -> str:
    city, subdivision = address_fields(address)
    return (
        f"<cac:PostalAddress><cbc:StreetName>{_text(address.street)}</cbc:StreetName>"
        f"<cbc:CityName>{_text(city)}</cbc:CityName>"
        + (f"<cbc:PostalZone>{_text(address.postal_code)}</cbc:PostalZone>" if address.postal_code else "")
        + (f"<cbc:CountrySubentity>{_text(subdivision)}</cbc:CountrySubentity>" if subdivision else "")
        + f"<cac:Country><cbc:IdentificationCode>{_text(address.country)}</cbc:IdentificationCode>"
        "</cac:Country></cac:PostalAddress>"
    )  # fmt: skip


def _group(tag: str, children: Sequence[tuple[str, str]]) -> str:
    """`<tag>` around those of its children (element, text) that have a text, or nothing when
    none has one."""
    inner = "".join(f"<{name}>{_text(text)}</{name}>" for name, text in children if text)
    return f"<{tag}>{inner}</{tag}>" if inner else ""


def _period(start: date | None, end: date | None) -> str:
    """An invoice period (BG-14, or BG-26 on a line): what it gives of its start and end."""
    return _group(
        "cac:InvoicePeriod",
        (("cbc:StartDate", start.isoformat() if start else ""),
         ("cbc:EndDate", end.isoformat() if end else "")),
    )  # fmt: skip


def _tax_category(element: str, rate: Decimal, exemption_reason: str) -> str:
    """`S` with its rate; `E` (exempt) at 0 %, with the reason in the VAT breakdown."""
    category = "S" if rate > 0 else "E"
    reason = ""
    if category == "E" and exemption_reason:
        reason = f"<cbc:TaxExemptionReason>{_text(exemption_reason)}</cbc:TaxExemptionReason>"
    return (
        f"<cac:{element}><cbc:ID>{category}</cbc:ID><cbc:Percent>{_number(rate)}</cbc:Percent>"
        f"{reason}<cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:{element}>"
    )


def _exemption_reason(supplier: Supplier, invoice: IssuedInvoice) -> str:
    """The legal ground of a 0 % rate, as the Romanian PDF prints it."""
    return exemption_ground(supplier, "ro")


def _item_name(description: str) -> tuple[str, str]:
    """(item name BT-153, item description BT-154): a description longer than a name may be
    is cut at a word for the name and given whole as the description."""
    if len(description) <= ITEM_NAME_LIMIT:
        return description, ""
    cut = description[: ITEM_NAME_LIMIT - 1]
    if " " in cut[ITEM_NAME_LIMIT // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…", description


class _Money:
    """`<cbc:Name currencyID="RON">12.34</cbc:Name>` for an amount of the invoice's currency."""

    def __init__(self, currency: str) -> None:
        self.attribute = f" currencyID={quoteattr(currency)}"

    def __call__(self, element: str, amount: Decimal, exact: bool = False) -> str:
        value = _number(amount) if exact else f"{amount + 0:.2f}"  # + 0: never "-0.00"
        return f"<cbc:{element}{self.attribute}>{value}</cbc:{element}>"


def _number(value: Decimal) -> str:
    """A decimal as plain digits: no exponent, no trailing zeros after the point."""
    return format(value.normalize() + 0, "f")


def _text(value: str) -> str:
    return escape(value)
