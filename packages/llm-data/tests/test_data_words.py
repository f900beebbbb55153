"""Word splitting against spaCy's English tokenizer (datatrove's reference), token for token."""

from __future__ import annotations

import json

import pytest

from llm_data.filters.words import EnglishTokenizer, english_tokenizer, load_rules

spacy = pytest.importorskip("spacy")

CASES = {
    "''Anarchism'' is a '''political philosophy''' and/or movement.":
        ["''", "Anarchism", "''", "is", "a", "''", "'", "political", "philosophy", "''", "'", "and/or", "movement",
         "."],
    "See p. 12 and Dr. Smith's notes, i.e. the U.S. ones.":
        ["See", "p.", "12", "and", "Dr.", "Smith", "'s", "notes", ",", "i.e.", "the", "U.S.", "ones", "."],
    "Read https://en.wikipedia.org/wiki/Anarchism?id=3 now":
        ["Read", "https://en.wikipedia.org/wiki/Anarchism?id=3", "now"],
    "It can't be, we'd said: 3.5% of 10km (approx.)...":
        ["It", "ca", "n't", "be", ",", "we", "'d", "said", ":", "3.5", "%", "of", "10", "km", "(", "approx", ".", ")",
         "..."],
    "''a'' ''b''\n\n[[File:X.jpg|thumb]]": ["''", "a", "''", "'", "'", "b", "''", "[", "[", "File", ":", "X.jpg|thumb",
                                          "]", "]"],
}


@pytest.fixture(scope="module")
def nlp():
    model = spacy.blank("en")
    model.add_pipe("sentencizer")
    return model


def _reference(nlp, text: str) -> list[str]:
    with nlp.memory_zone():  # as datatrove calls it: no cache
        return [t.text for t in nlp.tokenizer(text)]


@pytest.fixture(scope="module")
def wikitext() -> list[str]:
    """Raw wikitext sections of gensim's Wikipedia sample and the same text cleaned by gensim."""
    from gensim.corpora.wikicorpus import filter_wiki

    from llm_data.io.readers import MediaWikiReader
    from llm_data.stages.corpus import GENSIM_WIKI, _gensim_file

    pages = list(MediaWikiReader().read(_gensim_file(GENSIM_WIKI), print))[::15]
    raw = [part for page in pages for part in page.text.split("\n==") if part.strip()]
    return raw + [filter_wiki(part) for part in raw]


def test_the_cases_of_the_issue():
    tokenizer = english_tokenizer()
    for text, expected in CASES.items():
        assert tokenizer.words(text) == expected, text


def test_tokens_equal_spacy_on_wikitext(nlp, wikitext):
    tokenizer = english_tokenizer()
    for text in list(CASES) + wikitext:
        reference = _reference(nlp, text)
        assert tokenizer.tokens(text) == reference, text[:200]
        assert tokenizer.words(text) == [t for t in reference if t.strip()], "the cached path is the exact one"


def test_sentence_counts_equal_spacys_sentencizer(nlp, wikitext):
    tokenizer = english_tokenizer()
    lines = [line.strip() for text in wikitext[:80] for line in text.splitlines() if line.strip()]
    assert len(lines) > 300
    for line in lines:
        assert tokenizer.count_sentences(line) == len(list(nlp(line).sents)), line


def test_the_rules_asset_is_the_installed_spacys():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[3] / "tools" / "export_spacy_en_rules.py"
    spec = importlib.util.spec_from_file_location("export_spacy_en_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exported, shipped = module.spacy_rules(), load_rules()
    if exported["source"] != shipped["source"]:
        pytest.skip(f"installed {exported['source']} differs from the asset's {shipped['source']}: re-export")
    assert json.loads(json.dumps(exported)) == shipped


def test_a_small_cache_gives_the_same_words(monkeypatch, wikitext):
    import llm_data.filters.words as words

    monkeypatch.setattr(words, "CACHE_LIMIT", 50)
    small = EnglishTokenizer(load_rules())
    for text in wikitext[:20]:
        assert small.words(text) == english_tokenizer().words(text)


def test_one_character_affixes_are_what_the_expressions_say():
    tokenizer = english_tokenizer()
    assert "(" in tokenizer._prefix_one and ")" in tokenizer._suffix_one
    assert "." not in tokenizer._prefix_one and "." not in tokenizer._suffix_one  # "..." is one affix
    assert "+" not in tokenizer._prefix_one  # "+" only before a non-digit
    contexts = ["a", "Z", "7", "..", "'s", "$", "km", "''", "Dr"]
    for c in sorted(tokenizer._prefix_one):
        for rest in contexts:
            assert tokenizer._prefix(c + rest).end() == 1, (c, rest)
    for c in sorted(tokenizer._suffix_one):
        for before in contexts:
            match = tokenizer._suffix.search(before + c)
            assert match and match.end() - match.start() == 1, (before, c)
