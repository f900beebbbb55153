"""pii: each kind redacted with its placeholder; look-alikes that fail validation survive."""

from __future__ import annotations

import pytest

from llm_data.filters.pii import PiiConfig, PiiRedactor, iban_valid, luhn_valid


@pytest.mark.parametrize(("text", "kind", "placeholder"), [
    ("write to jane.doe@example.org today", "email", "<EMAIL>"),
    ("call +1 415-555-0199 now", "phone", "<PHONE>"),
    ("call (415) 555-0199 now", "phone", "<PHONE>"),
    ("server 192.168.10.4 is down", "ip", "<IP_ADDRESS>"),
    ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 here", "ip", "<IP_ADDRESS>"),
    ("card 4111 1111 1111 1111 on file", "credit_card", "<CREDIT_CARD>"),
    ("iban GB82 WEST 1234 5698 7654 32 please", "iban", "<IBAN>"),
])
def test_redacts_each_kind(make_doc, text, kind, placeholder):
    doc = PiiRedactor(PiiConfig()).transform(make_doc(text))
    assert placeholder in doc.text
    assert doc.metadata["pii"] == {kind: 1}


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails Luhn",
    "iban GB83 WEST 1234 5698 7654 32 fails mod 97",
    "version 999.1.2.3 is not an address",
    "born in 1912 and died in 1987",
    "no at sign here",
])
def test_leaves_lookalikes(make_doc, text):
    doc = PiiRedactor(PiiConfig()).transform(make_doc(text))
    assert doc.text == text and "pii" not in doc.metadata


def test_kinds_option_and_counts(make_doc):
    text = "a@b.com, c@d.org and 10.0.0.1"
    doc = PiiRedactor(PiiConfig(kinds=["email"])).transform(make_doc(text))
    assert doc.text == "<EMAIL>, <EMAIL> and 10.0.0.1" and doc.metadata["pii"] == {"email": 2}


def test_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")
