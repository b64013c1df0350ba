"""The GSM 03.38 default alphabet (GSM-7), SMS segment counting and transliteration into it.

A text made only of GSM-7 characters travels as 7-bit septets: 160 in a single SMS, 153 per part
once it is split (the rest of each part holds the concatenation header). The extension table's
characters (€ [ ] { } ^ ~ \\ | and form feed) are sent as an escape plus a code: 2 septets each.
One character outside GSM-7 (say ș) turns the whole text into UCS-2: 70 UTF-16 code units in a
single SMS, 67 per part.

Romanian diacritics are not in GSM-7, so notices are transliterated before sending:

    >>> transliterate("Plătiți până în 21.11.2026")
    'Platiti pana in 21.11.2026'
    >>> segments("Plătiți")
    ('UCS-2', 1)
"""

from __future__ import annotations

import unicodedata

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# Index = the character's code in the default alphabet; 0x1B is the escape to the extension table.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
# Character -> its code after the escape.
GSM7_EXTENSION = {
    "\x0c": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

SINGLE_GSM7 = 160  # septets in an SMS that is not split
PART_GSM7 = 153
SINGLE_UCS2 = 70  # UTF-16 code units
PART_UCS2 = 67

_BASIC = frozenset(GSM7_BASIC) - {chr(ESCAPE)}
_ALPHABET = _BASIC | frozenset(GSM7_EXTENSION)

_ROMANIAN = str.maketrans(
    {
        "ă": "a",
        "â": "a",
        "î": "i",
        "ș": "s",
        "ț": "t",
        "Ă": "A",
        "Â": "A",
        "Î": "I",
        "Ș": "S",
        "Ț": "T",
        # The cedilla forms are wrong for Romanian but common in older data.
        "ş": "s",
        "ţ": "t",
        "Ş": "S",
        "Ţ": "T",
    }
)
# Letters and punctuation that NFKD does not reduce to GSM-7.
_OTHERS = {
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Œ": "OE",
    "œ": "oe",
    "„": '"',
    "“": '"',
    "”": '"',
    "«": '"',
    "»": '"',
    "‚": "'",
    "‘": "'",
    "’": "'",
    "–": "-",
    "—": "-",
    "‐": "-",
    "‑": "-",
    "⁄": "/",
}


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the GSM-7 default alphabet or its extension."""
    return _ALPHABET.issuperset(text)


def septets(text: str) -> int:
    """The septets `text` takes in GSM-7 (extension characters count 2); `text` must be GSM-7."""
    return len(text) + sum(1 for c in text if c in GSM7_EXTENSION)


def segments(text: str) -> tuple[str, int]:
    """The encoding an SMS of `text` needs ("GSM-7" or "UCS-2") and how many segments it takes.

    A character never straddles two parts (neither an escaped GSM-7 character nor a UTF-16
    surrogate pair), so a split text may need one part more than its length divided by 153 (67).
    An empty text still takes one segment.
    """
    if is_gsm7(text):
        widths = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return GSM7, _count_parts(widths, SINGLE_GSM7, PART_GSM7)
    widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return UCS2, _count_parts(widths, SINGLE_UCS2, PART_UCS2)


def _count_parts(widths: list[int], single: int, part: int) -> int:
    if sum(widths) <= single:
        return 1
    parts, used = 1, 0
    for width in widths:
        if used + width > part:
            parts, used = parts + 1, 0
        used += width
    return parts


def transliterate(text: str) -> str:
    """`text` in GSM-7: Romanian diacritics (comma and cedilla forms) become their base letter,
    other accented Latin letters lose their marks (NFKD), typographic quotes and dashes become
    ASCII, other whitespace a space; anything still outside GSM-7 becomes '?'.

    Characters already in GSM-7 (é, ä, ñ, ...) are kept.
    """
    return "".join(_to_gsm7(c) for c in text.translate(_ROMANIAN))


def _to_gsm7(char: str) -> str:
    if char in _ALPHABET:
        return char
    if char in _OTHERS:
        return _OTHERS[char]
    if char.isspace():
        return " "
    if unicodedata.combining(char):
        return ""  # a mark of decomposed (NFD) input, e.g. the comma of "s\u0326"
    decomposed = unicodedata.normalize("NFKD", char)
    if decomposed == char:
        return "?"
    return "".join(_to_gsm7(c) for c in decomposed if not unicodedata.combining(c))
