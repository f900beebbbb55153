"""``pii``: redact e-mail addresses, phone numbers, IP addresses, credit cards and IBANs.

Each match becomes a typed placeholder (``<EMAIL>``, ``<PHONE>``, ...). Card numbers must pass
the Luhn check and IBANs the mod-97 check, so ordinary long numbers survive. Counts per type go to
``metadata.pii`` so the stage can sum them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document

PiiKind = Literal["email", "phone", "ip", "credit_card", "iban"]
ALL_KINDS: tuple[str, ...] = ("email", "credit_card", "iban", "ip", "phone")  # order of application

_PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    # 13-19 digits, optionally grouped by spaces or dashes.
    "credit_card": re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
    "ip": re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}"
                     r"[0-9A-Fa-f]{1,4}(?![\w:])"),
    # International (+CC ...) or North American (xxx) xxx-xxxx shapes, 9-15 digits in all.
    # Not part of a longer digit run (card numbers) or of an upper-case code group (IBANs).
    "phone": re.compile(r"(?<![\w+])(?<!\d[ .-])(?<![A-Z0-9]{4} )(?:\+\d{1,3}[ .-]?)?"
                        r"(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w-]|[ .-]\d)"),
}
_PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP_ADDRESS>",
                 "credit_card": "<CREDIT_CARD>", "iban": "<IBAN>"}


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ip_valid(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # Version-like strings (1.2.3.4) are valid addresses; skip only the unspecified one.
    return not address.is_unspecified


_VALIDATORS = {"credit_card": luhn_valid, "iban": iban_valid, "ip": ip_valid}


class PiiConfig(Config):
    kinds: list[PiiKind] = Field(list(ALL_KINDS), description="which kinds of PII to redact")


class PiiRedactor:
    """Replaces PII by typed placeholders; counts per kind land in ``metadata.pii``."""

    def __init__(self, config: PiiConfig):
        chosen = set(config.kinds or ALL_KINDS)
        self.kinds = [k for k in ALL_KINDS if k in chosen]
        # Cheap gates: skip a pattern when the text cannot contain it.
        self._gates = {"email": "@", "ip": None, "phone": None, "credit_card": None, "iban": None}

    def transform(self, doc: Document) -> Document:
        text, found = doc.text, {}
        for kind in self.kinds:
            gate = self._gates[kind]
            if gate and gate not in text:
                continue
            text, count = self._redact(kind, text)
            if count:
                found[kind] = count
        if found:
            doc.text = text
            doc.metadata["pii"] = found
        return doc

    @staticmethod
    def _redact(kind: str, text: str) -> tuple[str, int]:
        validator = _VALIDATORS.get(kind)
        placeholder = _PLACEHOLDERS[kind]
        count = 0

        def replace(match: re.Match) -> str:
            nonlocal count
            if validator is not None and not validator(match.group()):
                return match.group()
            count += 1
            return placeholder

        return _PATTERNS[kind].sub(replace, text), count
