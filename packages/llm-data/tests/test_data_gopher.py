"""gopher_quality and gopher_repetition: documents on both sides of every threshold."""

from __future__ import annotations

import pytest

from llm_data.filters.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
)


def gopher_quality(**options):
    return GopherQualityFilter(GopherQualityConfig(**options))


def gopher_repetition(**options):
    return GopherRepetitionFilter(GopherRepetitionConfig(**options))


def test_prose_passes_both(make_doc, prose):
    assert gopher_quality().filter(make_doc(prose)) is None
    assert gopher_repetition().filter(make_doc(prose)) is None


@pytest.mark.parametrize(("n_words", "expected"), [(49, "gopher_quality:too_few_words"), (50, None)])
def test_min_words_threshold(n_words, expected, make_doc, prose):
    text = " ".join((prose.split() * 2)[:n_words])
    assert gopher_quality().filter(make_doc(text)) == expected


def test_max_words_threshold(make_doc, prose):
    f = gopher_quality(max_doc_words=100)
    assert f.filter(make_doc(" ".join(prose.split()[:100]))) is None
    assert f.filter(make_doc(" ".join((prose.split() * 2)[:101]))) == "gopher_quality:too_many_words"


def test_mean_word_length_bounds(make_doc, prose):
    short = " ".join(["the", "of", "to", "be", "and", "a", "it", "is"] * 10)  # mean 2.25
    assert gopher_quality().filter(make_doc(short)) == "gopher_quality:short_words"
    long = " ".join(["the", "and", "internationalization", "uncharacteristically", "counterrevolutionaries"] * 12)
    assert gopher_quality().filter(make_doc(long)) == "gopher_quality:long_words"
    # exactly 3.0 passes (the rule is "below 3")
    three = " ".join(["the", "and", "cat", "dog", "with", "of"] * 10)  # mean (3+3+3+3+4+2)/6 = 3.0
    assert gopher_quality().filter(make_doc(three)) is None


def test_hash_ratio_threshold(make_doc, prose):
    base = prose.split()[:100]
    ten = " ".join(w if i % 10 else f"#{w}" for i, w in enumerate(base))  # 10 hashes / ~110 words
    many = " ".join(w if i % 5 else f"#{w}" for i, w in enumerate(base))  # 20 hashes
    assert gopher_quality().filter(make_doc(ten)) is None
    assert gopher_quality().filter(make_doc(many)) == "gopher_quality:too_many_hashes"


def test_ellipsis_ratio_and_lines(make_doc, prose):
    lines = prose.split(". ")
    doc = "\n".join(line + "..." for line in lines)
    assert gopher_quality(max_symbol_word_ratio=None).filter(make_doc(doc)) == \
        "gopher_quality:too_many_ellipsis_lines"
    few = "\n".join(line + ("..." if i == 0 else ".") for i, line in enumerate(lines))  # 1 of 5 lines
    assert gopher_quality().filter(make_doc(few)) is None


def test_bullet_lines_threshold(make_doc, prose):
    sentences = prose.split(". ")
    bullets = "\n".join(f"• {s}" for s in sentences * 2)
    assert gopher_quality().filter(make_doc(bullets)) == "gopher_quality:too_many_bullet_lines"
    half = "\n".join(f"• {s}" if i % 2 else s for i, s in enumerate(sentences * 2))
    assert gopher_quality().filter(make_doc(half)) is None


def test_alphabetic_ratio_threshold(make_doc, prose):
    base = prose.split()[:80]
    numbers = " ".join(base + ["123"] * 30)  # ~(80+punct)/(110+punct) < 0.8
    assert gopher_quality().filter(make_doc(numbers)) == "gopher_quality:few_alphabetic_words"
    assert gopher_quality().filter(make_doc(" ".join(base + ["123"] * 5))) is None


def test_stop_words_threshold(make_doc, prose):
    no_stop = " ".join(["river", "house", "market", "street", "church", "garden"] * 10)
    assert gopher_quality().filter(make_doc(no_stop)) == "gopher_quality:few_stop_words"
    assert gopher_quality().filter(make_doc(no_stop + " the and")) is None


def test_duplicate_lines_and_paragraphs(make_doc, prose):
    sentences = [s.strip() + "." for s in prose.split(".") if s.strip()]
    unique = "\n".join(sentences)
    assert gopher_repetition().filter(make_doc(unique)) is None
    repeated = "\n".join(sentences + sentences[:3])  # 3 duplicates in 9 lines: 0.33 > 0.3
    reason = gopher_repetition(dup_line_char_frac=None).filter(make_doc(repeated))
    assert reason == "gopher_repetition:duplicate_lines"
    paragraphs = "\n\n".join(sentences + sentences[:3])
    assert gopher_repetition().filter(make_doc(paragraphs)) == "gopher_repetition:duplicate_paragraphs"
    one = "\n".join(sentences + sentences[-1:])  # 1 duplicate in 7 lines, but its chars count
    assert gopher_repetition(dup_line_char_frac=None, dup_n_grams={}).filter(make_doc(one)) is None


def test_top_ngram_threshold(make_doc, prose):
    text = prose + " " + " ".join(["market town"] * 40)
    assert gopher_repetition().filter(make_doc(text)) == "gopher_repetition:top_2_gram"
    assert gopher_repetition().filter(make_doc(prose + " market town market town")) is None


def test_duplicate_ngram_threshold(make_doc, prose):
    chunk = " ".join(prose.split()[:12])
    text = prose + " " + chunk + " " + chunk
    reason = gopher_repetition(top_n_grams={}).filter(make_doc(text))
    assert reason is not None and reason.startswith("gopher_repetition:duplicate_")
    assert gopher_repetition(top_n_grams={}).filter(make_doc(prose + " " + chunk[:30])) is None


def test_matches_naive_reference_on_ngrams(make_doc, prose):
    """The numpy n-gram statistics equal a plain-Python transcription of the Gopher rules."""
    from collections import Counter

    import numpy as np

    from llm_data.filters.text import (
        duplicate_ngram_chars,
        ngram_hashes,
        top_ngram_chars,
        window_sums,
        word_ids,
    )

    words = ("a b c d e a b c d e f a b c d e x y a b " * 5).split()
    ids = word_ids(words)
    lengths = np.array([len(w) for w in words])
    for n in (2, 3, 4):
        grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        top, count = Counter(grams).most_common(1)[0]
        assert top_ngram_chars(ngram_hashes(ids, n), window_sums(lengths, n) + n - 1) == len(top) * count
    for n in (5, 6, 7):
        seen, repeated, i = set(), 0, 0
        while i < len(words) - n + 1:
            gram = "".join(words[i:i + n])
            if gram in seen:
                repeated += len(gram)
                i += n
            else:
                seen.add(gram)
                i += 1
        assert duplicate_ngram_chars(ngram_hashes(ids, n), lengths, n, limit=0) == repeated


def test_duplicate_line_and_paragraph_char_fractions(make_doc, prose):
    long_line = prose  # one long line repeated once: 1 duplicate in many lines, but many characters
    short_lines = "\n".join(f"line number {i} of the list." for i in range(20))
    f = gopher_repetition(dup_line_frac=None, dup_para_frac=None, top_n_grams={}, dup_n_grams={})
    # the repeated line holds about 1/3 of the characters (> 0.2)
    assert f.filter(make_doc(f"{long_line}\n{short_lines}\n{long_line}")) == \
        "gopher_repetition:duplicate_line_chars"
    # a short repeated line stays under 0.2 of the characters
    assert f.filter(make_doc(f"{long_line}\n{short_lines}\nline number 3 of the list.")) is None
    assert f.filter(make_doc(f"{long_line}\n\n{short_lines}\n\n{long_line}")) == \
        "gopher_repetition:duplicate_paragraph_chars"
