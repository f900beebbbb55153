"""pass@k (the unbiased estimator of Chen et al. 2021) and final-answer extraction; intervals are
``llm_core.stats``'s."""

from __future__ import annotations

import re


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn without replacement from ``n``, of
    which ``c`` are correct, is correct: ``1 - C(n - c, k) / C(n, k)`` (Chen et al. 2021, eq. 1),
    computed as the product ``1 - prod_{i = n - c + 1}^{n} (1 - k / i)`` that never overflows."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"(?:answer is|answer:|####)\s*\$?\s*([-+]?[\d,]*\.?\d+|\([A-Ja-j]\)|[A-Ja-j]\b)", re.I)
_NUMBER = re.compile(r"[-+]?\d[\d,]*\.?\d*")


def extract_answer(text: str) -> str | None:
    """The final answer a completion commits to, for majority voting: the last ``<answer>``,
    ``\\boxed{}``, "the answer is" / "####", else the last number; normalized (no commas, no
    trailing period, lower case). None when there is none (an abstention)."""
    for pattern in (_ANSWER_TAG, _BOXED, _ANSWER_IS):
        found = pattern.findall(text)
        if found:
            return _clean(found[-1])
    numbers = _NUMBER.findall(text)
    return _clean(numbers[-1]) if numbers else None


def _clean(answer: str) -> str | None:
    answer = answer.strip().replace(",", "").rstrip(".").strip("()").lower()
    if re.fullmatch(r"[-+]?\d+\.0*", answer):
        answer = answer.split(".")[0]
    return answer or None
