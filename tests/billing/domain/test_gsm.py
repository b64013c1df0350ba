"""GSM-7 vs UCS-2: how many segments an SMS takes, and transliteration into GSM-7."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.gsm import GSM7_BASIC, GSM7_EXTENSION, is_gsm7, segments, transliterate

ROMANIAN = "ăâîșțĂÂÎȘȚşţŞŢ"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a" * 160, ("GSM-7", 1), id="ascii-160-one"),
        pytest.param("a" * 161, ("GSM-7", 2), id="ascii-161-two"),
        pytest.param("a" * 306, ("GSM-7", 2), id="ascii-306-two-parts-of-153"),
        pytest.param("a" * 307, ("GSM-7", 3), id="ascii-307-three"),
        pytest.param("é£ÄΩ¿" * 32, ("GSM-7", 1), id="gsm7-letters-beyond-ascii"),
        pytest.param("ș", ("UCS-2", 1), id="one-s-comma-is-ucs2"),
        pytest.param("a" * 69 + "ș", ("UCS-2", 1), id="ucs2-70-one"),
        pytest.param("a" * 70 + "ș", ("UCS-2", 2), id="ucs2-71-two"),
        pytest.param("a" * 133 + "ș", ("UCS-2", 2), id="ucs2-134-two-parts-of-67"),
        pytest.param("a" * 134 + "ș", ("UCS-2", 3), id="ucs2-135-three"),
        pytest.param("a" * 159 + "ș", ("UCS-2", 3), id="short-gsm7-text-spoilt-by-one-s"),
        pytest.param("😀" * 35, ("UCS-2", 1), id="surrogate-pairs-count-two"),
        pytest.param("😀" * 35 + "a", ("UCS-2", 2), id="surrogate-pairs-71-units"),
        pytest.param("€" * 80, ("GSM-7", 1), id="euro-counts-double-160"),
        pytest.param("€" * 80 + "a", ("GSM-7", 2), id="euro-counts-double-161"),
        pytest.param("a" * 159 + "[", ("GSM-7", 2), id="bracket-counts-double"),
        pytest.param("[]{}^~\\|€\x0c" * 8, ("GSM-7", 1), id="every-extension-char-160"),
        pytest.param("a" * 152 + "€" + "a" * 152, ("GSM-7", 3), id="escape-never-split"),
        pytest.param("", ("GSM-7", 1), id="empty"),
    ],
)
def test_segments(text, expected):
    assert segments(text) == expected


def test_the_tables_are_gsm_03_38():
    assert len(GSM7_BASIC) == 128
    assert (GSM7_BASIC[0x00], GSM7_BASIC[0x24], GSM7_BASIC[0x40], GSM7_BASIC[0x60]) == (
        "@",
        "¤",
        "¡",
        "¿",
    )
    assert sorted(GSM7_EXTENSION) == sorted("\x0c^{}\\[~]|€")
    assert not set(GSM7_EXTENSION) & set(GSM7_BASIC)


@pytest.mark.parametrize("char", list(ROMANIAN))
def test_no_romanian_diacritic_is_gsm7(char):
    assert not is_gsm7(char)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(ROMANIAN, "aaistAAISTstST", id="every-romanian-diacritic"),
        pytest.param("Ştefan Ţiţeica", "Stefan Titeica", id="cedilla-forms"),
        pytest.param("s\u0326t\u0326a\u0306", "sta", id="decomposed-nfd-input"),
        pytest.param("Łódź, Čačak, Œuvre", "Lodz, Cacak, OEuvre", id="other-latin-letters"),
        pytest.param("„Ofertă” – 10 €", '"Oferta" - 10 €', id="quotes-dashes-euro"),
        pytest.param("café Müller Niño", "café Müller Niño", id="gsm7-accents-kept"),
        pytest.param("a\tb\u00a0c", "a b c", id="other-whitespace-is-a-space"),
        pytest.param("電話 😀", "?? ?", id="the-rest-is-a-question-mark"),
        pytest.param("\ud800", "?", id="lone-surrogate"),
    ],
)
def test_transliterate(text, expected):
    assert transliterate(text) == expected
    assert is_gsm7(transliterate(text))


@given(st.text())
def test_transliteration_is_always_gsm7(text):
    result = transliterate(text)
    assert is_gsm7(result)
    assert segments(result)[0] == "GSM-7"
