"""The invoice e-mail (subject, plain text, HTML) in the customer's language.

Wording lives in jinja2 templates under `renderers/templates/` (`email.<lang>.txt.j2`,
`email.<lang>.html.j2`); amounts and dates use the Romanian formats of `renderers.formats`, as on
the PDF. The HTML templates are autoescaped, so a customer name such as `<script>` arrives as text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from billing.domain.model import IssuedInvoice, Supplier
from renderers.formats import format_amount, format_date

TEMPLATES = Path(__file__).with_name("templates")
LANGUAGES = ("ro", "en")
SUBJECTS = {
    "ro": "Factura {number} de la {supplier}",
    "en": "Your invoice {number} from {supplier}",
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
        raise ValueError(f"no e-mail template for language {language!r}")
    if link is not None and urlsplit(link).scheme not in ("https", "http"):
        raise ValueError("link must be an http(s) URL")
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
