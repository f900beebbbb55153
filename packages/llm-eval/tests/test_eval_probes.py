"""Long-context probes: every task at any length and tokenizer fits, is answerable, and the check bites."""

from __future__ import annotations

import pytest

from llm_eval.probes import TASKS, build, check_answerable, score


class Words:
    def encode(self, text: str) -> list[str]:
        return text.split()


class Characters:
    def encode(self, text: str) -> list[str]:
        return list(text)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("tokenizer", [Words(), Characters()], ids=["words", "characters"])
def test_items_fit_their_length_and_are_answerable(task, tokenizer):
    for length in (400, 3000):
        for seed in range(5):
            item = build(task, length, seed / 4, seed, tokenizer)  # build checks answerability itself
            prompt = f"{item.context}\n\n{item.question}"
            assert len(tokenizer.encode(prompt)) <= length
            assert len(tokenizer.encode(prompt)) > 0.8 * length  # the haystack really fills the length
            assert score(item, " ".join(item.answers)) == 1.0


def test_same_seed_same_item_and_needle_at_its_depth():
    a, b = build("niah_single", 2000, 0.25, 7, Words()), build("niah_single", 2000, 0.25, 7, Words())
    assert a == b
    position = a.context.index("special magic number") / len(a.context)
    assert abs(position - 0.25) < 0.05


def test_check_catches_an_item_whose_context_lost_its_answer():
    item = build("babilong_qa1", 500, 0.5, 0, Words())
    item.context = item.context.replace(" to the ", " towards the ")
    with pytest.raises(AssertionError, match="not answerable"):
        check_answerable(item)
    needle = build("niah_multivalue", 500, 0.5, 0, Words())
    needle.context = needle.context.replace(needle.answers[0], "0000000")
    with pytest.raises(AssertionError, match="not answerable"):
        check_answerable(needle)


def test_string_match_scores_partial_answers():
    item = build("niah_multiquery", 500, 0.5, 0, Words())
    assert score(item, f"{item.answers[0]} and {item.answers[1]}") == 0.5
