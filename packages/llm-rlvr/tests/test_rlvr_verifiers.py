"""Math, format, combinators, process rewards, and the asynchronous verifier pool."""

from __future__ import annotations

import pytest

from llm_core.plugins import get_registries
from llm_core.refs import VerifierRef


@pytest.fixture(scope="module")
def verifiers():
    return get_registries().verifiers


@pytest.mark.parametrize("completion,reference,expected", [
    ("so the result is \\boxed{42}", "42", True),
    ("\\boxed{\\frac{1}{2}}", "0.5", True),
    ("<think>3+4=7</think> <answer>7</answer>", "7", True),
    ("The answer is 1,234.", "1234", True),
    ("#### 17", "17", True),
    ("first 3 then 5 and finally 8", "8", True),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),
    ("\\boxed{x^2 + 2x + 1}", "(x+1)^2", True),
    ("\\boxed{41}", "42", False),
    ("no numbers here", "42", False),
    ("<answer>6</answer> but really 7", "7", False),  # a marked answer wins over the last number
])
def test_math_verifier(verifiers, completion, reference, expected):
    verdict = verifiers.build("math").verify("q", completion, reference)
    assert verdict.passed is expected
    assert verdict.score == float(expected)


def test_math_sympy_never_evaluates_arbitrary_code(verifiers):
    # Without math-verify the sympy path runs; a dunder expression must be rejected, not eval'd.
    v = verifiers.build("math", {"use_math_verify": False, "last_number_fallback": False})
    verdict = v.verify("q", "\\boxed{__import__('os').system('touch /tmp/pwned')}", "0")
    assert not verdict.passed
    assert v.verify("q", "\\boxed{\\frac{6}{4}}", "3/2").passed


def test_format_and_weighted(verifiers):
    good = "<think>2*3=6</think>\n<answer>6</answer>"
    bad = "6"
    fmt = verifiers.build("format")
    assert fmt.verify("", good, None).passed and not fmt.verify("", bad, None).passed
    mixed = verifiers.build("weighted", {"components": [
        {"verifier": "math", "weight": 1.0}, {"verifier": "format", "weight": 0.2}]})
    assert mixed.verify("", good, "6").score == pytest.approx(1.2)
    v = mixed.verify("", bad, "6")
    assert v.score == pytest.approx(1.0) and v.passed
    v = mixed.verify("", "<think>x</think><answer>5</answer>", "6")
    assert v.score == pytest.approx(0.2) and not v.passed


def test_weighted_rejects_bad_pass_index():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pass_from"):
        get_registries().verifiers.get("weighted").parse({"components": [{"verifier": "math"}], "pass_from": 3})


def test_length_penalty(verifiers):
    v = verifiers.build("length_penalty", {"verifier": "math", "max_chars": 20, "buffer_chars": 10,
                                           "penalty": 1.0})
    assert v.verify("", "\\boxed{4}", "4").score == pytest.approx(1.0)
    assert v.verify("", "x" * 5 + "\\boxed{4}" + "y" * 1, "4").score == pytest.approx(1.0 - 0.5)
    assert v.verify("", "z" * 40 + "\\boxed{4}", "4").score == pytest.approx(0.0)


def test_process_reward_with_arithmetic_steps(verifiers):
    prm = verifiers.build("process_reward", {"scorer": "arithmetic_steps", "aggregate": "mean"})
    right = "<think>3 + 4 = 7\n7 * 2 = 14</think><answer>14</answer>"
    wrong = "<think>3 + 4 = 8\n8 * 2 = 16</think><answer>16</answer>"
    assert prm.verify("", right, None).score == 1.0
    assert prm.verify("", wrong, None).score == pytest.approx(0.5)
    with pytest.raises(TypeError, match="score_steps"):
        verifiers.build("process_reward", {"scorer": "math"})


def test_pool_matches_in_process():
    from llm_rlvr.pool import VerifierPool

    items = [("", f"\\boxed{{{i}}}", str(i if i % 3 else i + 1)) for i in range(30)]
    with VerifierPool(VerifierRef(name="math"), workers=0) as local:
        expected = [v.passed for v in local.verify_many(items)]
    with VerifierPool(VerifierRef(name="math"), workers=2, timeout_s=20) as pool:
        got = [f.result().passed for f in pool.submit_many(items)]
    assert got == expected


def test_pool_submit_does_not_wait_for_verdicts():
    from llm_rlvr.pool import VerifierPool

    with VerifierPool(VerifierRef(name="code"), workers=2, timeout_s=30) as pool:
        futures = pool.submit_many([("", "import time; time.sleep(1.5)", "")] * 2)
        assert not any(f.done() for f in futures)  # the caller is free to keep generating
        assert all(f.result().passed for f in futures)


def test_pool_times_out_a_stuck_sample(tmp_path):
    """A verifier stuck on one sample scores it 0 and the pool carries on with the next."""
    from llm_rlvr.pool import VerifierPool

    with VerifierPool(VerifierRef(name="code", options={"wall_seconds": 30, "cpu_seconds": 30}), workers=1,
                      timeout_s=2) as pool:
        stuck = pool.submit("", "while True: pass", "")
        fine = pool.submit("", "assert 1 + 1 == 2", "")
        verdict = stuck.result()
        assert verdict.reason == "verifier timed out" and verdict.score == 0.0
        assert fine.result().passed
