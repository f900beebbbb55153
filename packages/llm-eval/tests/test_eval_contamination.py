"""The contamination index: normalization, what it flags (verbatim, edited, templated), saving, the planted set."""

from __future__ import annotations

import random

import pytest

from llm_eval.index import ContaminationIndex, EvalItem, MatchRule
from llm_eval.ngrams import NORMALIZATION, token_spans, tokenize

LONG = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May? Natalia sold 48 / 2 = 24 clips in May. "
        "Natalia sold 48 + 24 = 72 clips altogether in April and May.")
SHORT = "Ana has 12 apples. Ana gets 5 more apples, then gives away 3. How many apples does Ana have now?"
PROSE = ("The committee met on Tuesday to discuss the new library budget, and most members agreed that the "
         "reading room needed better lighting before the winter term began. ")


def index(*texts: str, **rule) -> ContaminationIndex:
    return ContaminationIndex.build([EvalItem("set", str(i), t) for i, t in enumerate(texts)], MatchRule(**rule))


def test_normalization_ignores_case_and_punctuation_in_any_script():
    assert tokenize("Hello, WORLD! it's 3.5") == ["hello", "world", "it", "s", "3", "5"]
    assert tokenize("ＡＢＣ Straße") == ["abc", "strasse"]  # NFKC full-width letters, casefold
    assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # combining vowel signs stay in the word
    assert tokenize("东京は") == ["东", "京", "は"]  # no-space scripts: one token per character
    assert tokenize("snake_case(x)") == ["snake_case", "x"]
    text = "Ein Beispiel, mit Umlauten: Äpfel."
    spans = token_spans(text)
    assert [text[a:b].casefold() for a, b in spans] == tokenize(text)
    assert NORMALIZATION.startswith("nfkc-casefold")


def test_long_item_found_verbatim_edited_and_partly_quoted():
    idx = index(LONG)
    edited = LONG.upper().replace(",", "").replace("friends", "pals")
    quote = "As the book puts it, " + " ".join(LONG.split()[:16]) + " and so on."
    matches = idx.match_texts([PROSE + LONG, PROSE + edited, quote, PROSE * 3])
    assert [m is not None for m in matches] == [True, True, True, False]
    assert matches[0].item_id == "0" and matches[0].kind == "ngram" and matches[0].score == 1.0
    start, end = matches[0].chars
    assert (PROSE + LONG)[start:end].startswith("Natalia sold clips")


@pytest.mark.parametrize("position", range(0, 20))
def test_one_replaced_word_anywhere_in_a_short_item_is_found(position):
    """Short items are anchored by 8-grams: any single replaced word leaves one intact."""
    idx = index(SHORT)
    words = SHORT.split()
    if words[position].strip(".,?").isdigit():
        pytest.skip("a number: changing it makes another problem")
    words[position] = "zebra"
    assert idx.match_texts([PROSE + " ".join(words) + " " + PROSE])[0] is not None


def test_templated_problem_with_other_numbers_is_not_flagged():
    idx = index(SHORT)
    other_numbers = SHORT.replace("12", "17").replace("5 more", "9 more")
    other_names = SHORT.replace("Ana", "Ben")
    found = idx.match_texts([other_numbers, other_names, SHORT.lower()])
    assert found[0] is None  # a different problem from the same template
    assert found[1] is not None and found[1].kind == "overlap"  # the same problem, other names
    assert found[2] is not None


def test_template_grams_shared_by_many_items_are_not_evidence():
    header = "A: Let's think step by step. We refer to Wikipedia articles on history for help."
    items = [f"Q: Question number {w} about a different topic entirely here. {header} The answer is (B)."
             for w in ("one", "two", "three", "four", "five", "six", "seven")]
    idx = index(*[i * 3 for i in items])  # long items
    assert idx.match_texts([PROSE + header + " " + header + PROSE])[0] is None


def test_short_items_are_counted_not_indexed():
    idx = index("too short", LONG)
    assert idx.summary()["items"] == 1 and idx.summary()["skipped_short"] == {"set": 1}


def test_index_saves_and_loads(tmp_path):
    idx = index(LONG, SHORT)
    idx.save(str(tmp_path / "index"))
    loaded = ContaminationIndex.load(str(tmp_path / "index"))
    docs = [PROSE + LONG, SHORT, PROSE]
    assert loaded.match_texts(docs) == idx.match_texts(docs)
    assert loaded.summary() == idx.summary()
    with pytest.raises(FileNotFoundError, match="not a contamination index"):
        ContaminationIndex.load(str(tmp_path))


def test_builtin_eval_sets_read_offline():
    from llm_eval.eval_sets import BUILTINS

    counts = {name: len(list(load(name))) for name, load in BUILTINS.items()}
    assert counts == {"gsm8k": 8, "mmlu": 282, "bbh": 81, "humaneval": 164}


def test_planted_lee_corpus_recall_by_kind_and_no_clean_flagged():
    """The acceptance set in miniature (news articles only; tools/bench_eval.py and the README use
    the Wikipedia sample too)."""
    pytest.importorskip("gensim")
    from llm_eval.eval_sets import BUILTINS
    from llm_eval.synthetic import KINDS, gensim_texts, planted_corpus, score, windows

    items = [item for name, load in BUILTINS.items() for item in load(name)]
    docs = windows(gensim_texts(wikipedia=False))
    result = score(ContaminationIndex.build(items), planted_corpus(docs, items, 0.4, seed=1))
    for kind in KINDS:
        assert result[kind]["inserted"] >= 20
        assert result[kind]["recall"] >= 0.95, (kind, result[kind])
        assert result[kind]["precision"] == 1.0, (kind, result[kind])
    assert result["clean"]["flagged"] == 0


def test_unicode_items_match_in_other_scripts():
    chinese = "东京是日本的首都也是最大的城市人口超过一千万人"
    hindi = "हिन्दी भारत की एक प्रमुख भाषा है और इसे करोड़ों लोग बोलते हैं और लिखते हैं"
    idx = index(chinese, hindi)
    found = idx.match_texts(["新闻：" + chinese + "。", "आज " + hindi])
    assert [m.item_id for m in found] == ["0", "1"]
    rng = random.Random(0)
    assert idx.match_texts(["".join(rng.sample(chinese, len(chinese)))])[0] is None
