"""pass@k against brute-force enumeration, answer extraction, majority voting, the test-time-compute curve."""

from __future__ import annotations

import itertools
import math

import pytest

from llm_core.stats import wilson_interval
from llm_eval.passk import extract_answer, pass_at_k
from llm_eval.ttc import curve_point, majority_right


def brute_force_pass_at_k(correct: list[bool], k: int) -> float:
    """The share of all k-subsets of the samples that hold at least one correct sample."""
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_unbiased_estimator_equals_enumeration(n):
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(correct, k), abs=1e-12)


def test_estimator_matches_the_closed_form_and_is_stable_for_large_n():
    assert pass_at_k(200, 13, 10) == pytest.approx(1 - math.comb(187, 10) / math.comb(200, 10), rel=1e-12)
    assert 0 < pass_at_k(10_000, 3, 64) < 1
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_wilson_interval_brackets_the_rate():
    low, high = wilson_interval(30, 100)
    assert low < 0.3 < high and high - low < 0.2
    assert wilson_interval(0, 10)[0] == 0.0


@pytest.mark.parametrize(("text", "answer"), [
    ("<think>2 + 3 = 5</think><answer>5</answer>", "5"), ("so \\boxed{1,024}.", "1024"),
    ("The answer is (C).", "c"), ("#### 72", "72"), ("it is 3 then 4.0", "4"), ("no idea", None)])
def test_final_answers_for_voting(text, answer):
    assert extract_answer(text) == answer


def test_majority_vote_ignores_abstentions_and_breaks_ties_by_first_seen():
    passed = [False, True, True, False, False]
    answers = ["7", "5", "5", None, "7"]
    assert majority_right(passed, answers, [0, 1, 2, 3]) is True  # 5 twice beats 7 once
    assert majority_right(passed, answers, [0, 1, 4, 2]) is False  # 7 seen first at a 2-2 tie
    assert majority_right(passed, answers, [3]) is False


def test_curve_point_at_full_n_uses_every_sample():
    judged = [([True, False, False, False], ["1", "2", "2", "3"], [0.9, 0.1, 0.2, 0.3], [10, 10, 10, 10]),
              ([False, False, True, True], ["4", "5", "6", "6"], [0.5, 0.4, 0.3, 0.2], [20, 20, 20, 20])]
    point = curve_point(judged, 4, subsets=8, seed=0)
    assert point == {"n": 4, "pass": 1.0, "majority": 0.5, "best_of_n": 0.5, "tokens": 60.0}
    one = curve_point(judged, 1, subsets=400, seed=0)
    assert one["pass"] == pytest.approx(0.375) and 0.2 < one["majority"] < 0.55
