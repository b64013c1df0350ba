"""The page's words, Romanian first (the default) and English on request.

One table: a missing English text falls back to the Romanian one, never to a key.
"""

from __future__ import annotations

LANGUAGES = ("ro", "en")

TEXTS: dict[str, dict[str, str]] = {
    "title": {"ro": "Facturile mele", "en": "My invoices"},
    "skip": {"ro": "Sari la conținut", "en": "Skip to content"},
    "language": {"ro": "Limba", "en": "Language"},
    "switch_language": {"ro": "English", "en": "Română"},
    "switch_language_label": {"ro": "Switch to English", "en": "Treci la română"},
    "home_heading": {"ro": "Vezi-ți factura", "en": "See your invoice"},
    "home_intro": {
        "ro": "Scrie numărul de telefon al abonamentului. Îți trimitem prin SMS un cod de "
        "acces de 6 cifre.",
        "en": "Enter the phone number of your subscription. We will text you a 6-digit access "
        "code.",
    },
    "phone_label": {"ro": "Număr de telefon", "en": "Phone number"},
    "phone_hint": {
        "ro": "De exemplu 0722 123 456 sau +40 722 123 456",
        "en": "For example 0722 123 456 or +40 722 123 456",
    },
    "send_code": {"ro": "Trimite codul", "en": "Send the code"},
    "sms_hint": {
        "ro": "Poți cere codul și prin SMS: trimite COD la numărul scurt al operatorului, apoi "
        "scrie aici numărul și codul.",
        "en": "You can also ask for the code by SMS: text CODE to the operator's short number, "
        "then enter the number and the code here.",
    },
    "have_code": {"ro": "Am primit codul prin SMS", "en": "I got the code by SMS"},
    "phone_invalid": {
        "ro": "Numărul nu pare un număr de telefon din România. Scrie-l ca 07xx xxx xxx.",
        "en": "That does not look like a Romanian phone number. Write it as 07xx xxx xxx.",
    },
    "code_heading": {"ro": "Scrie codul primit", "en": "Enter the code you received"},
    "code_sent": {
        "ro": "Dacă numărul {phone} aparține unui abonament, ai primit un SMS cu un cod de 6 "
        "cifre. Codul este valabil {minutes} minute.",
        "en": "If {phone} belongs to a subscription, you have received a text with a 6-digit "
        "code. The code is valid for {minutes} minutes.",
    },
    "code_label": {"ro": "Codul de 6 cifre", "en": "The 6-digit code"},
    "check_code": {"ro": "Intră în cont", "en": "Sign in"},
    "new_code": {"ro": "Cere alt cod", "en": "Ask for another code"},
    "code_wrong": {
        "ro": "Codul nu este corect. Mai ai {tries} încercări.",
        "en": "That code is not right. {tries} tries left.",
    },
    "code_locked": {
        "ro": "Ai greșit codul de prea multe ori și nu mai este valabil. Cere alt cod.",
        "en": "The code was entered wrongly too many times and is no longer valid. Ask for a new one.",
    },
    "code_expired": {
        "ro": "Codul a expirat sau a fost deja folosit. Cere alt cod.",
        "en": "The code has expired or was already used. Ask for a new one.",
    },
    "code_missing": {
        "ro": "Nu am găsit o cerere de cod în curs. Cere un cod nou.",
        "en": "There is no code request in progress. Ask for a new code.",
    },
    "code_format": {"ro": "Codul are 6 cifre.", "en": "The code has 6 digits."},
    "too_many": {
        "ro": "Prea multe cereri. Încearcă din nou peste o oră.",
        "en": "Too many requests. Please try again in an hour.",
    },
    "forbidden": {
        "ro": "Formularul a expirat sau nu a fost trimis de pe această pagină. Reîncarcă "
        "pagina și încearcă din nou.",
        "en": "The form has expired or was not sent from this page. Reload the page and try again.",
    },
    "account_heading": {"ro": "Contul tău", "en": "Your account"},
    "account_of": {"ro": "Abonament {customer}", "en": "Subscription {customer}"},
    "latest_heading": {"ro": "Ultima factură", "en": "Latest invoice"},
    "no_invoices": {
        "ro": "Nu ai încă nicio factură emisă pe acest număr.",
        "en": "There is no invoice issued for this number yet.",
    },
    "number": {"ro": "Număr", "en": "Number"},
    "period": {"ro": "Perioada", "en": "Period"},
    "issued": {"ro": "Emisă", "en": "Issued"},
    "total": {"ro": "Total de plată", "en": "Total due"},
    "due": {"ro": "Scadență", "en": "Due date"},
    "download": {"ro": "Descarcă PDF", "en": "Download PDF"},
    "download_invoice": {
        "ro": "Descarcă factura {number} (PDF)",
        "en": "Download invoice {number} (PDF)",
    },
    "open": {"ro": "Deschide pentru tipărire", "en": "Open to print"},
    "open_invoice": {
        "ro": "Deschide factura {number} pentru tipărire",
        "en": "Open invoice {number} to print",
    },
    "last_six_heading": {"ro": "Ultimele șase facturi", "en": "Last six invoices"},
    "invoice": {"ro": "Factura", "en": "Invoice"},
    "prefs_heading": {"ro": "Cum primești facturile", "en": "How you receive invoices"},
    "prefs_next_cycle": {
        "ro": "O schimbare se aplică de la următoarea factură.",
        "en": "A change applies from the next invoice.",
    },
    "prefs_pending": {
        "ro": "Ai o schimbare înregistrată care se aplică de la următoarea factură.",
        "en": "You have a recorded change that applies from the next invoice.",
    },
    "prefs_saved": {"ro": "Am salvat alegerea ta.", "en": "Your choice is saved."},
    "prefs_unchanged": {
        "ro": "Alegerea ta era deja aceasta.",
        "en": "That was already your choice.",
    },
    "prefs_error": {"ro": "Nu am putut salva. Verifică:", "en": "Could not save. Please check:"},
    "delivery": {"ro": "Factura", "en": "Invoice"},
    "delivery_electronic": {
        "ro": "Electronică (în cont și prin e-mail/SMS)",
        "en": "Electronic (in your account and by e-mail/SMS)",
    },
    "delivery_paper": {"ro": "Pe hârtie, prin poștă", "en": "On paper, by post"},
    "notify": {"ro": "Anunță-mă prin", "en": "Tell me by"},
    "notify_email": {"ro": "E-mail", "en": "E-mail"},
    "notify_sms": {"ro": "SMS", "en": "SMS"},
    "notify_both": {"ro": "E-mail și SMS", "en": "E-mail and SMS"},
    "notify_none": {"ro": "Nu mă anunța", "en": "Do not tell me"},
    "address": {
        "ro": "Adresa pentru factura pe hârtie",
        "en": "Mailing address for paper invoices",
    },
    "address_hint": {
        "ro": "Necesară doar pentru factura pe hârtie.",
        "en": "Needed only for paper invoices.",
    },
    "paper_street": {
        "ro": "Strada, numărul, blocul, apartamentul",
        "en": "Street, number, building, flat",
    },
    "paper_city": {"ro": "Localitatea", "en": "City or town"},
    "paper_county": {
        "ro": "Județul (sau sectorul, în București)",
        "en": "County (or sector, in Bucharest)",
    },
    "paper_postal_code": {"ro": "Codul poștal (6 cifre)", "en": "Postal code (6 digits)"},
    "save": {"ro": "Salvează", "en": "Save"},
    "logout": {"ro": "Ieși din cont", "en": "Sign out"},
    "logged_out": {"ro": "Ai ieșit din cont.", "en": "You are signed out."},
    "print": {"ro": "Tipărește pagina", "en": "Print this page"},
    "not_found": {"ro": "Pagina nu există.", "en": "There is no such page."},
    "back_home": {"ro": "Înapoi la început", "en": "Back to the start"},
    "unavailable": {
        "ro": "Serviciul nu este disponibil acum. Încearcă din nou în câteva minute.",
        "en": "The service is not available right now. Please try again in a few minutes.",
    },
    # refusals of a preference change (billing.accounts.preferences reason codes)
    "reason_missing": {"ro": "câmpul este gol", "en": "this field is empty"},
    "reason_invalid_postal_code": {
        "ro": "codul poștal are 6 cifre",
        "en": "a postal code has 6 digits",
    },
    "reason_invalid_county": {"ro": "nu este un județ din România", "en": "not a Romanian county"},
    "reason_no_mailing_address": {
        "ro": "scrie adresa pentru factura pe hârtie",
        "en": "give the mailing address for paper invoices",
    },
    "reason_no_email": {
        "ro": "nu avem o adresă de e-mail a ta; alege SMS",
        "en": "we have no e-mail address of yours; choose SMS",
    },
    "reason_no_sms": {
        "ro": "nu avem un număr de mobil al tău",
        "en": "we have no mobile number of yours",
    },
    "reason_invalid_choice": {"ro": "alegere necunoscută", "en": "unknown choice"},
    "reason_other": {"ro": "valoare neacceptată", "en": "value not accepted"},
}


def translate(language: str, key: str, **values: object) -> str:
    entry = TEXTS[key]
    text = entry.get(language) or entry["ro"]
    return text.format(**values) if values else text
