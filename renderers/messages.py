"""The notice texts in the customer's language: the e-mail (subject, plain text, HTML) and the SMS.

Wording lives in jinja2 templates under `renderers/templates/` (`email.<lang>.txt.j2`,
`email.<lang>.html.j2`); amounts and dates use the Romanian formats of `renderers.formats`, as on
the PDF. The HTML templates are autoescaped, so a customer name such as `<script>` arrives as text.

The SMS is one GSM-7 segment (`billing.domain.gsm`), its wording in `SMS_TEMPLATES`, or in
`SMS_LINK_TEMPLATES` when it links to the self-service page and the link fits.

A notice that cannot be written for an invoice (a language or currency without a text, a link
that is not http(s), no room in one SMS) raises `UnsendableNoticeError`
(billing.domain.errors), a `PermanentDeliveryError`: the notify step records that notice as
failed for good.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from billing.domain.errors import UnsendableNoticeError
from billing.domain.gsm import SINGLE_GSM7, is_gsm7, septets, transliterate
from billing.domain.model import IssuedInvoice, Supplier
from renderers.formats import format_amount, format_date

TEMPLATES = Path(__file__).with_name("templates")
LANGUAGES = ("ro", "en")
SUBJECTS = {
    "ro": "Factura {number} de la {supplier}",
    "en": "Your invoice {number} from {supplier}",
}
SMS_TEMPLATES = {
    "ro": "{supplier}: factura {number} de {amount} lei, scadenta {due}. Detalii in contul tau.",
    "en": "{supplier}: invoice {number} of {amount} lei, due {due}. Details in your account.",
}
# The link ends the text: a full stop after it would be taken into the address by some phones.
SMS_LINK_TEMPLATES = {
    "ro": "{supplier}: factura {number} de {amount} lei, scadenta {due}. Vezi factura: {link}",
    "en": "{supplier}: invoice {number} of {amount} lei, due {due}. See it at {link}",
}


def render_email(
    invoice: IssuedInvoice, supplier: Supplier, link: str | None = None
) -> tuple[str, str, str]:
    """The notice for `invoice` as (subject, text, html), in the customer's language.

    With `link` (an http(s) URL) the message points to the download; without it, it says the PDF
    is attached. The subject is a single line whatever the supplier name holds.
    """
    language = invoice.customer.language
    if language not in LANGUAGES:
        raise UnsendableNoticeError(f"no e-mail template for language {language!r}")
    if link is not None and urlsplit(link).scheme not in ("https", "http"):
        raise UnsendableNoticeError("link must be an http(s) URL")
    context = {
        "customer_name": invoice.customer.name,
        "number": invoice.number,
        "total": format_amount(invoice.total),
        "currency": "lei" if invoice.currency == "RON" else invoice.currency,
        "due_date": format_date(invoice.due_date),
        "period_start": format_date(invoice.period_start),
        "period_end": format_date(invoice.period_end),
        "supplier": supplier,
        "contacts": [item for item in (supplier.phone, supplier.email, supplier.website) if item],
        "link": link,
    }
    environment = _environment()
    subject = SUBJECTS[language].format(number=invoice.number, supplier=supplier.name)
    text = environment.get_template(f"email.{language}.txt.j2").render(context)
    html = environment.get_template(f"email.{language}.html.j2").render(context)
    return " ".join(subject.split()), text, html


def render_sms(invoice: IssuedInvoice, supplier_name: str, link: str | None = None) -> str:
    """The notice of `invoice` in its customer's language (ro or en), e.g.
    "Telecom Exemplu: factura OR00000001 de 239,95 lei, scadenta 21.11.2026. Detalii in contul
    tau."

    With `link` (the self-service page's http(s) address) it ends "... Vezi factura: <link>"
    ("See it at <link>") instead.

    The text is GSM-7 and fits one segment: a supplier name too long for it is shortened (at a
    word boundary when it can be); the invoice number, amount and due date are always whole.
    The link is never cut: it goes only when the supplier name, shortened, still keeps its first
    word and the link is written in GSM-7 as it is; otherwise the text goes without it (never
    as two segments). Raises `UnsendableNoticeError` for an unsupported language or currency,
    an empty supplier name, a link that is not http(s), or when not even one character of the
    supplier name fits.
    """
    language = invoice.customer.language
    template = SMS_TEMPLATES.get(language)
    if template is None:
        raise UnsendableNoticeError(
            f"invoice {invoice.number}: customer language {language!r} is not ro or en"
        )
    if invoice.currency != "RON":
        raise UnsendableNoticeError(
            f"invoice {invoice.number}: currency {invoice.currency!r} is not supported "
            "(amounts are written in lei)"
        )
    if link is not None and urlsplit(link).scheme not in ("https", "http"):
        raise UnsendableNoticeError("link must be an http(s) URL")
    supplier = " ".join(transliterate(supplier_name).split())
    if not supplier:
        raise UnsendableNoticeError("the supplier name is empty")
    fields = {
        "number": transliterate(invoice.number),
        "amount": format_amount(invoice.total),
        "due": format_date(invoice.due_date),
    }
    if link is not None and is_gsm7(link) and not any(c.isspace() for c in link):
        linked = SMS_LINK_TEMPLATES[language]
        room = SINGLE_GSM7 - septets(transliterate(linked.format(supplier="", link="", **fields)))
        room -= septets(link)
        # the supplier gives way first, down to its first word; then the link does
        if room >= min(septets(supplier), septets(supplier.split(" ")[0])):
            shortened = _shorten(supplier, room)
            if shortened:
                return transliterate(linked.format(supplier=shortened, link=link, **fields))
    room = SINGLE_GSM7 - septets(transliterate(template.format(supplier="", **fields)))
    supplier = _shorten(supplier, room)
    if not supplier:
        raise UnsendableNoticeError(
            f"invoice {invoice.number}: number, amount and due date leave no room for the "
            "supplier name in one SMS segment"
        )
    return transliterate(template.format(supplier=supplier, **fields))


def _shorten(name: str, room: int) -> str:
    if septets(name) <= room:
        return name
    used = end = 0
    while end < len(name) and used + septets(name[end]) <= room:
        used += septets(name[end])
        end += 1
    cut = name[:end]
    if name[end] != " " and " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-")


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        # select_autoescape matches the end of the template name, so "html" alone would miss
        # "email.ro.html.j2": name the full suffix.
        autoescape=select_autoescape(["html", "html.j2"], default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
