"""url_filter, language_id, toxicity, c4_quality, fineweb_quality: both sides of each rule."""

from __future__ import annotations

import pytest

from llm_data.filters.c4 import C4QualityConfig, C4QualityFilter
from llm_data.filters.fineweb import FineWebQualityConfig, FineWebQualityFilter
from llm_data.filters.language_id import LanguageIdConfig, LanguageIdFilter
from llm_data.filters.toxicity import ToxicityConfig, ToxicityFilter
from llm_data.filters.url_filter import UrlFilter, UrlFilterConfig


def url_filter(**options):
    return UrlFilter(UrlFilterConfig(**options))


def language_id(**options):
    return LanguageIdFilter(LanguageIdConfig(**options))


def toxicity(**options):
    return ToxicityFilter(ToxicityConfig(**options))


def fineweb(**options):
    return FineWebQualityFilter(FineWebQualityConfig(**options))


def c4(**options):
    return C4QualityFilter(C4QualityConfig(**options))


@pytest.mark.parametrize(("url", "expected"), [
    ("https://en.wikipedia.org/wiki/Town", None),
    ("https://www.pornhub.com/view", "url_filter:blocked_domain"),  # shipped list, via subdomain
    ("https://spam.example.net/a", "url_filter:blocked_domain"),    # user list
    ("https://notexample.net/a", None),                              # not a parent domain
    ("https://cheap-viagra-store.biz/", "url_filter:banned_subword"),
    ("https://site.org/exact/page", "url_filter:blocked_url"),
])
def test_url_filter(make_doc, url, expected):
    f = url_filter(blocked_domains=["example.net"], blocked_urls=["https://site.org/exact/page"])
    assert f.filter(make_doc("text", url=url)) == expected


def test_url_filter_missing_url_and_no_defaults(make_doc):
    assert url_filter().filter(make_doc("text")) is None
    assert url_filter(drop_missing_url=True).filter(make_doc("text")) == "url_filter:missing_url"
    assert url_filter(use_default_lists=False).filter(make_doc("t", url="https://www.pornhub.com/")) is None


def test_language_id_keeps_english_and_stores_metadata(make_doc, prose):
    doc = make_doc(prose)
    assert language_id(languages=["en"]).filter(doc) is None
    assert doc.metadata["language"] == "en" and doc.metadata["language_score"] > 0.9


def test_language_id_drops_other_language_and_low_score(make_doc):
    french = make_doc("Le gouvernement a annoncé hier une nouvelle réforme des retraites pour tous.")
    assert language_id(languages=["en"]).filter(french) == "language_id:other_language"
    assert french.metadata["language"] == "fr"
    assert language_id(languages=["en", "fr"]).filter(french) is None
    # the same document on both sides of the score threshold
    score = french.metadata["language_score"]
    assert language_id(languages=["fr"], min_score=score - 0.01).filter(french) is None
    assert language_id(languages=["fr"], min_score=min(score + 0.001, 1.0)).filter(french) == \
        "language_id:low_score"
    assert language_id(languages=["fr"], min_score=1.0, label_only=True).filter(french) is None


def test_language_id_top_label_shortcut_decides_as_every_label(make_doc, prose):
    """At min_score >= 0.5 only the top label can pass, so asking fastText for it alone (faster)
    must decide, and label, exactly as looking at every label does."""
    texts = [prose, "Le gouvernement a annoncé hier une nouvelle réforme des retraites pour tous.",
             "Die Regierung hat gestern eine neue Reform angekündigt. The government said yes.", "ok ok 123"]
    for min_score in (0.5, 0.65, 0.9):
        model = language_id(languages=["en"], min_score=min_score)
        for text in texts:
            labels, scores = model.model.predict(text, k=-1)
            keep = any(label == "__label__en" and score > min_score
                       for label, score in zip(labels, scores, strict=True))
            doc = make_doc(text)
            reason = model.filter(doc)
            assert (reason is None) == keep and doc.metadata["language"] == labels[0][9:]
            assert doc.metadata["language_score"] == round(float(scores[0]), 4)


def test_toxicity_word_list_threshold(make_doc, prose):
    f = toxicity(max_toxic_word_ratio=0.02, min_toxic_words=2)
    n_words = len(prose.split())
    clean_enough = prose + " shit"  # one toxic word: below min_toxic_words
    assert f.filter(make_doc(clean_enough)) is None
    dense = prose + " shit" * max(3, n_words // 20)
    assert f.filter(make_doc(dense)) == "toxicity:word_list"
    assert toxicity(words=["river"], use_default_list=False, min_toxic_words=1,
                          max_toxic_word_ratio=0.0).filter(make_doc(prose)) == "toxicity:word_list"


def test_toxicity_classifier(make_doc, prose):
    pytest.importorskip("profanity_check")
    f = toxicity(use_default_list=False, use_classifier=True)
    doc = make_doc(prose)
    assert f.filter(doc) is None and doc.metadata["toxicity_score"] < 0.5
    rude = make_doc("you are a fucking idiot\nshut up you stupid piece of shit\nwhat a fucking moron")
    assert f.filter(rude) == "toxicity:classifier"


def test_c4_quality(make_doc, prose):
    lines = [s.strip() + "." for s in prose.split(".") if s.strip()]
    lines += ["The river is wide and deep here.", "People like to swim in it on hot days."]
    doc = make_doc("\n".join(lines + ["Menu", "Accept our cookie policy and terms of use.",
                                      "Enable javascript to see this page."]))
    assert c4().filter(doc) is None
    assert doc.text == "\n".join(lines)  # boilerplate lines removed, prose kept
    assert c4().filter(make_doc("\n".join(lines[:4]))) == "c4_quality:too_few_sentences"
    assert c4().filter(make_doc("\n".join(lines[:5]))) is None
    assert c4().filter(make_doc(prose + "\nLorem ipsum dolor sit amet.")) == "c4_quality:lorem_ipsum"
    assert c4().filter(make_doc(prose + "\nvar x = {a: 1} is code.")) == "c4_quality:curly_bracket"


def test_fineweb_quality(make_doc, prose):
    lines = [s.strip() + "." for s in prose.split(".") if s.strip()]
    assert fineweb().filter(make_doc("\n".join(lines))) is None
    unpunctuated = "\n".join(line.rstrip(".") for line in lines)
    assert fineweb().filter(make_doc(unpunctuated)) == "fineweb_quality:few_punctuated_lines"
    short = "\n".join(lines + ["Home.", "About us.", "Contact.", "Shop.", "News.", "Blog.", "Login.",
                               "Help.", "Jobs.", "Press.", "Legal.", "Terms."])
    assert fineweb().filter(make_doc(short)) == "fineweb_quality:many_short_lines"
    duplicated = "\n".join(lines + lines[:1])
    assert fineweb().filter(make_doc(duplicated)) == "fineweb_quality:duplicate_line_chars"
    assert fineweb(max_duplicate_line_char_ratio=0.5).filter(make_doc(duplicated)) is None
    listing = "\n".join(f"{w}." for w in dict.fromkeys(prose.replace(",", "").split()))
    assert fineweb(max_short_line_ratio=1.0).filter(make_doc(listing)) == "fineweb_quality:list_like"
