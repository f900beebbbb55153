"""``math``: extracts a final answer from a completion and checks it against the reference.

Extraction tries, in order: ``\\boxed{...}``, ``<answer>...</answer>``, "answer: X" / "answer is X" /
"#### X", and (optionally) the last number in the text. Equivalence tries exact match after
normalization, then numeric equality, then ``math-verify`` when it is installed, then a symbolic
check with sympy on a whitelisted expression (model output is never handed to ``eval`` unchecked).
"""

from __future__ import annotations

import re
import time
from fractions import Fraction
from typing import Any

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Verdict

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_PHRASE = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*([^\n]+)|####\s*([^\n]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_SAFE_EXPR = re.compile(r"^[0-9a-z+\-*/(). ]*$")
_ALLOWED_NAMES = {"sqrt", "pi", "e", "log", "exp", "sin", "cos", "tan", "i"}


def boxed_contents(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{}``), with nested braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def extract_answer(text: str, last_number_fallback: bool = True) -> str | None:
    boxed = boxed_contents(text)
    if boxed is not None:
        return boxed.strip()
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    phrases = _ANSWER_PHRASE.findall(text)
    if phrases:
        return (phrases[-1][0] or phrases[-1][1]).strip().rstrip(".")
    if last_number_fallback:
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1]
    return None


def normalize(answer: str) -> str:
    """Strip what does not change a value: $, spaces, \\text{}, \\left / \\right, thousands commas."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = s.rstrip(".").replace(" ", "")
    return s.lower()


def as_number(s: str) -> Fraction | None:
    frac = re.fullmatch(r"\\frac\{(-?\d+)\}\{(\d+)\}", s)
    if frac:
        s = f"{frac.group(1)}/{frac.group(2)}"
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _latex_to_python(s: str) -> str:
    s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
    s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
    s = s.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "pi").replace("^", "**")
    return s.replace("{", "(").replace("}", ")")


def sympy_equal(a: str, b: str) -> bool:
    """Symbolic equality of two whitelisted expressions (letters only from a short list)."""
    from sympy import simplify
    from sympy.parsing.sympy_parser import parse_expr, standard_transformations

    exprs = []
    for raw in (a, b):
        s = _latex_to_python(raw)
        if len(s) > 200 or "__" in s or not _SAFE_EXPR.match(s.replace("**", "*")):
            return False
        names = set(re.findall(r"[a-z]+", s))
        if not names <= _ALLOWED_NAMES and not all(len(n) == 1 for n in names - _ALLOWED_NAMES):
            return False
        try:
            exprs.append(parse_expr(s, transformations=standard_transformations, evaluate=True))
        except Exception:  # noqa: BLE001 - anything unparsable is simply not equal
            return False
    try:
        return bool(simplify(exprs[0] - exprs[1]) == 0)
    except Exception:  # noqa: BLE001
        return False


def math_verify_equal(answer: str, reference: str) -> bool | None:
    """``math-verify``'s judgement, or None when it is not installed."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    try:
        return bool(verify(parse(f"${reference}$"), parse(f"${answer}$")))
    except Exception:  # noqa: BLE001 - its parser raises on odd input; treat as no match
        return False


class MathConfig(Config):
    last_number_fallback: bool = Field(True, description="take the last number when no answer is marked")
    tolerance: float = Field(1e-6, ge=0, description="relative tolerance of numeric comparison")
    use_math_verify: bool = Field(True, description="use math-verify when it is installed")
    use_sympy: bool = Field(True, description="try symbolic equality with sympy")


class MathVerifier:
    """Final-answer correctness for math: 1.0 when the extracted answer equals the reference."""

    def __init__(self, config: MathConfig | None = None):
        config = config or MathConfig()
        self.last_number_fallback, self.tolerance = config.last_number_fallback, config.tolerance
        self.use_math_verify, self.use_sympy = config.use_math_verify, config.use_sympy

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        start = time.perf_counter()
        answer = extract_answer(completion, self.last_number_fallback)
        if answer is None:
            return Verdict(0.0, False, "no answer found", time.perf_counter() - start)
        ok, how = self.equivalent(answer, str(reference))
        return Verdict(float(ok), ok, f"{how}: {answer!r} vs {reference!r}"[:200], time.perf_counter() - start)

    def equivalent(self, answer: str, reference: str) -> tuple[bool, str]:
        a, r = normalize(answer), normalize(reference)
        if a == r:
            return True, "exact"
        na, nr = as_number(a), as_number(r)
        if na is not None and nr is not None:
            close = abs(na - nr) <= self.tolerance * max(1, abs(nr))
            return close, "numeric"
        if self.use_math_verify:
            judged = math_verify_equal(answer, reference)
            if judged:
                return True, "math-verify"
        if self.use_sympy and sympy_equal(a, r):
            return True, "sympy"
        return False, "different"
