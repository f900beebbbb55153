"""The one text normalization of contamination checks: words of any script, case and punctuation ignored.

Normalization (``NORMALIZATION``, recorded in every saved index):

1. Unicode NFKC (full-width letters, ligatures and compatibility forms fold to their plain forms),
   then ``str.casefold`` (case-insensitive in every script: "Straße" == "STRASSE").
2. Tokens are maximal runs of Unicode word characters: letters (``\\p{L}``), combining marks
   (``\\p{M}``, so Devanagari or Arabic words stay whole), digits (``\\p{N}``) and the underscore
   (identifiers in code stay one token). Everything else (punctuation, symbols, whitespace) only
   separates tokens, so "it's" is two tokens and "3.5" is two.
3. Scripts written without spaces (Han, Hiragana, Katakana, Thai) give one token per character.

ASCII text (and the ASCII pieces of other text) takes a fast path (``str.translate`` and ``split``)
that gives exactly the same tokens.
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache

NORMALIZATION = "nfkc-casefold-unicode-words-v1"
_NO_SPACE_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}"
# A byte table: every ASCII byte that is not a letter, a digit or the underscore becomes a space,
# upper case becomes lower case; bytes >= 0x80 (the rest of a UTF-8 character) stay as they are.
_SEPARATOR_BYTES = set((string.punctuation.replace("_", "") + string.whitespace).encode()) | set(range(32)) | {127}
_ASCII_TABLE = bytes(32 if b in _SEPARATOR_BYTES else (b + 32 if 65 <= b <= 90 else b) for b in range(256))


def _ascii_pieces(text: str) -> list[str]:
    """Split on ASCII separators and whitespace, ASCII letters lowered (a C-speed byte table)."""
    return text.encode("utf-8").translate(_ASCII_TABLE).decode("utf-8").split()


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
        return _ascii_pieces(text)
    # ASCII separators and whitespace separate tokens under the Unicode rule too, so only the
    # pieces that hold non-ASCII characters need the (slower) Unicode pattern.
    pieces = _ascii_pieces(normalize(text))
    find = _unicode_token_re().findall
    for i in reversed([i for i, piece in enumerate(pieces) if not piece.isascii()]):
        pieces[i:i + 1] = find(pieces[i])
    return pieces


def token_spans(text: str) -> list[tuple[int, int]] | None:
    """Character span in ``text`` of each token ``tokenize`` gives, or None where normalization
    changed the text's length (rare: ligatures, "ß"), so that positions cannot be mapped back."""
    import regex

    if text.isascii():
        return [m.span() for m in regex.finditer(r"[A-Za-z0-9_]+", text)]
    if len(normalize(text)) != len(text):
        return None
    return [m.span() for m in _unicode_token_re().finditer(normalize(text))]
