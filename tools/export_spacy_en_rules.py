"""Export spaCy's English tokenizer rules to llm-data's asset ``spacy_en_tokenizer.json``.

llm-data's word splitting (``llm_data.filters.words``) replays spaCy's English tokenizer, the one
datatrove's Gopher, C4 and FineWeb filters split words with, from these rules: the prefix, suffix
and infix expressions, the URL expression, the special cases (``"Dr."``, ``"can't"``, ``"''"``...)
and the sentencizer's sentence-final characters. Re-run after a spaCy upgrade; the test
``test_data_words.py`` checks the asset against the installed spaCy.

    uv run python tools/export_spacy_en_rules.py
"""

from __future__ import annotations

import json
from pathlib import Path

ASSET = Path(__file__).parent.parent / "packages/llm-data/src/llm_data/assets/spacy_en_tokenizer.json"


def spacy_rules() -> dict:
    import spacy
    from spacy.attrs import ORTH
    from spacy.pipeline.sentencizer import Sentencizer

    tokenizer = spacy.blank("en").tokenizer
    return {
        "source": f"spaCy {spacy.__version__}, spacy.blank('en').tokenizer and the Sentencizer's punct_chars",
        "license": "MIT License, Copyright (C) 2016-2024 ExplosionAI GmbH, 2016 spaCy GmbH, 2015 Matthew Honnibal",
        "prefix": tokenizer.prefix_search.__self__.pattern,
        "suffix": tokenizer.suffix_search.__self__.pattern,
        "infix": tokenizer.infix_finditer.__self__.pattern,
        "url": tokenizer.url_match.__self__.pattern,
        "special_cases": {text: [token[ORTH] for token in tokens] for text, tokens in sorted(tokenizer.rules.items())},
        "sentence_punct_chars": sorted(Sentencizer.default_punct_chars),
    }


if __name__ == "__main__":
    rules = spacy_rules()
    ASSET.write_text(json.dumps(rules, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{ASSET}: {len(rules['special_cases'])} special cases, {ASSET.stat().st_size / 1024:.0f} KiB")
