"""The printed words of an invoice, in Romanian and in English.

English invoices keep the legal Romanian terms beside the English ones (FACTURĂ, TVA, CUI,
Reg. Com., CNP) so that a Romanian auditor recognises every mandatory field.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Labels:
    """One language's labels; `{…}` fields are filled in by the renderer."""

    title: str
    series_number: str  # {series} {seq}
    number: str
    issue_date: str
    period: str
    due_date: str
    customer_id: str
    customer: str
    share_capital: str
    bank: str
    phone: str
    country_ro: str
    col_no: tuple[str, ...]
    col_description: tuple[str, ...]
    col_quantity: tuple[str, ...]
    col_unit_price: tuple[str, ...]
    col_net: tuple[str, ...]
    col_rate: tuple[str, ...]
    line_period: str  # {start} {end}
    exemption: str  # {rate} {ground}
    vat_rate: str
    vat_base: str
    vat_amount: str
    total_net: str
    total_vat: str
    total_due: str
    payment: str
    payee: str
    reference: str
    amount: str
    currency: str
    page: str  # {page} {pages}
    continued: str
    continuation: str  # {number}
    no_signature: str
    default_exemption_ground: str


RO = Labels(
    title="FACTURĂ",
    series_number="Seria {series} nr. {seq}",
    number="Nr. factură",
    issue_date="Data emiterii",
    period="Perioada",
    due_date="Data scadenței",
    customer_id="Cod client",
    customer="CLIENT",
    share_capital="Capital social",
    bank="Banca",
    phone="Tel.",
    country_ro="România",
    col_no=("Nr.", "crt."),
    col_description=("Denumirea produselor", "sau a serviciilor"),
    col_quantity=("Cant.",),
    col_unit_price=("Preț unitar", "fără TVA (lei)"),
    col_net=("Valoare", "fără TVA (lei)"),
    col_rate=("Cota", "TVA"),
    line_period="Perioada: {start} – {end}",
    exemption="Cota TVA {rate}: {ground}",
    vat_rate="Cota TVA",
    vat_base="Bază impozabilă (lei)",
    vat_amount="Valoare TVA (lei)",
    total_net="Total fără TVA",
    total_vat="Total TVA",
    total_due="Total de plată",
    payment="DETALII DE PLATĂ",
    payee="Beneficiar",
    reference="Referință plată",
    amount="Suma de plată",
    currency="lei",
    page="Pagina {page} din {pages}",
    continued="Continuare pe pagina următoare",
    continuation="FACTURĂ {number} (continuare)",
    no_signature="Factura este valabilă fără semnătură și ștampilă (art. 319 alin. (29) Cod fiscal).",
    default_exemption_ground="Scutit de TVA conform art. 292 din Codul fiscal",
)

EN = Labels(
    title="INVOICE (FACTURĂ)",
    series_number="Series {series} no. {seq}",
    number="Invoice no.",
    issue_date="Issue date",
    period="Billing period",
    due_date="Due date",
    customer_id="Customer ID",
    customer="CUSTOMER",
    share_capital="Share capital",
    bank="Bank",
    phone="Phone",
    country_ro="Romania",
    col_no=("No.",),
    col_description=("Description of goods", "or services"),
    col_quantity=("Qty",),
    col_unit_price=("Unit price", "excl. VAT (lei)"),
    col_net=("Amount", "excl. VAT (lei)"),
    col_rate=("VAT", "rate"),
    line_period="Period: {start} – {end}",
    exemption="VAT rate {rate}: {ground}",
    vat_rate="VAT rate",
    vat_base="Taxable base (lei)",
    vat_amount="VAT (TVA) (lei)",
    total_net="Total excl. VAT",
    total_vat="Total VAT (TVA)",
    total_due="Total to pay",
    payment="PAYMENT DETAILS",
    payee="Payee",
    reference="Payment reference",
    amount="Amount to pay",
    currency="lei",
    page="Page {page} of {pages}",
    continued="Continued on the next page",
    continuation="INVOICE {number} (continued)",
    no_signature="Valid without signature or stamp (Romanian Fiscal Code, art. 319 (29)).",
    default_exemption_ground="VAT exempt under art. 292 of the Romanian Fiscal Code (scutit de TVA)",
)

LABELS = {"ro": RO, "en": EN}
