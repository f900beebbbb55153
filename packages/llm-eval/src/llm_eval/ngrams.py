"""The one text normalization of contamination checks: words of any script, case and punctuation ignored.

Normalization (``NORMALIZATION``, recorded in every saved index):

1. Unicode NFKC (full-width letters, ligatures and compatibility forms fold to their plain forms),
   then ``str.casefold`` (case-insensitive in every script: "Straße" == "STRASSE").
2. Tokens are maximal runs of Unicode word characters: letters (``\\p{L}``), combining marks
   (``\\p{M}``, so Devanagari or Arabic words stay whole), digits (``\\p{N}``) and the underscore
   (identifiers in code stay one token). Everything else (punctuation, symbols, whitespace) only
   separates tokens, so "it's" is two tokens and "3.5" is two.
3. Scripts written without spaces (Han, Hiragana, Katakana, Thai) give one token per character.

ASCII text takes a fast path (``str.translate`` and ``split``) that gives exactly the same tokens.
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache

NORMALIZATION = "nfkc-casefold-unicode-words-v1"
_NO_SPACE_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}"
# Every ASCII character that is not a letter, a digit or the underscore becomes a space.
_ASCII_SEPARATORS = str.maketrans({c: " " for c in string.punctuation.replace("_", "") + "\t\n\r\x0b\x0c"}
                                  | {chr(c): " " for c in range(32)} | {"\x7f": " "})


@cache
def _unicode_token_re():
    import regex

    return regex.compile(rf"[{_NO_SPACE_SCRIPTS}]|[[\p{{L}}\p{{M}}\p{{N}}_]--[{_NO_SPACE_SCRIPTS}]]+", regex.V1)


def normalize(text: str) -> str:
    """NFKC then casefold (ASCII text: lowercase, the same thing there)."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    """The normalized word tokens of ``text`` (see the module docstring)."""
    if text.isascii():
        return text.lower().translate(_ASCII_SEPARATORS).split()
    return _unicode_token_re().findall(normalize(text))


def token_spans(text: str) -> list[tuple[int, int]] | None:
    """Character span in ``text`` of each token ``tokenize`` gives, or None where normalization
    changed the text's length (rare: ligatures, "ß"), so that positions cannot be mapped back."""
    import regex

    if text.isascii():
        return [m.span() for m in regex.finditer(r"[A-Za-z0-9_]+", text)]
    if len(normalize(text)) != len(text):
        return None
    return [m.span() for m in _unicode_token_re().finditer(normalize(text))]
