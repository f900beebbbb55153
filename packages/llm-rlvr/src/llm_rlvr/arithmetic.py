"""``arithmetic_problems``: seeded multi-step arithmetic word problems with known answers.

Writes, under the stage folder:

* ``train/problems.jsonl`` and ``heldout/problems.jsonl``: ``{id, prompt, reference, steps}``; no
  prompt appears in both splits;
* ``traces/conversations.jsonl``: cold-start SFT chats on train problems, the assistant answering
  ``<think>`` one equation per line ``</think>`` then ``<answer>N</answer>``;
* ``documents/documents.jsonl``: pretraining text from train problems only (worked solutions in a
  plain style, and arithmetic drills), so the held-out split is never seen before evaluation.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field

from llm_core.artifacts import atomic_open
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult

NAMES = ("Ana", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goro", "Hana", "Ivan", "Jade", "Kofi", "Lena")
ITEMS = ("apples", "pens", "coins", "books", "stamps", "shells", "cards", "marbles", "cookies", "stickers")


@dataclass(frozen=True)
class Problem:
    prompt: str
    steps: tuple[str, ...]
    answer: int


def _op(a: int, op: str, b: int) -> tuple[int, str]:
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return value, f"{a} {op} {b} = {value}"


def _gain_loss(rng: random.Random, n: int) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, n), rng.randint(2, n)
    s1, e1 = _op(a, "+", b)
    c = rng.randint(1, s1)
    s2, e2 = _op(s1, "-", c)
    prompt = (f"{name} has {a} {item}. {name} gets {b} more {item}, then gives away {c}. "
              f"How many {item} does {name} have now?")
    return Problem(prompt, (e1, e2), s2)


def _groups(rng: random.Random, n: int) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    boxes, per = rng.randint(2, min(9, n)), rng.randint(2, min(9, n))
    s1, e1 = _op(boxes, "*", per)
    extra = rng.randint(1, n)
    if rng.random() < 0.5:
        s2, e2 = _op(s1, "+", extra)
        tail = f"and finds {extra} more {item}"
    else:
        extra = min(extra, s1)
        s2, e2 = _op(s1, "-", extra)
        tail = f"and loses {extra} {item}"
    prompt = (f"{name} buys {boxes} boxes with {per} {item} in each box {tail}. "
              f"How many {item} does {name} have?")
    return Problem(prompt, (e1, e2), s2)


def _share(rng: random.Random, n: int) -> Problem:
    a, b = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    x, y = rng.randint(2, n), rng.randint(2, n)
    s1, e1 = _op(x, "+", y)
    times = rng.randint(2, 4)
    s2, e2 = _op(s1, "*", times)
    prompt = (f"{a} has {x} {item} and {b} has {y} {item}. They put them together, and then the pile "
              f"is made {times} times bigger. How many {item} are in the pile?")
    return Problem(prompt, (e1, e2), s2)


def _three_steps(rng: random.Random, n: int) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, n), rng.randint(2, n)
    s1, e1 = _op(a, "+", b)
    c = rng.randint(1, s1)
    s2, e2 = _op(s1, "-", c)
    d = rng.randint(1, n)
    s3, e3 = _op(s2, "+", d)
    prompt = (f"{name} starts with {a} {item}, wins {b}, spends {c}, and then earns {d} more. "
              f"How many {item} does {name} end with?")
    return Problem(prompt, (e1, e2, e3), s3)


TEMPLATES: tuple[Callable[[random.Random, int], Problem], ...] = (_gain_loss, _groups, _share, _three_steps)


def make_problem(rng: random.Random, max_number: int = 30) -> Problem:
    """One problem; ``max_number`` bounds every number the problem states (the difficulty knob)."""
    return rng.choice(TEMPLATES)(rng, max_number)


def r1_trace(problem: Problem) -> str:
    """The cold-start format: reasoning in <think>, one equation per line, then the answer."""
    return "<think>\n" + "\n".join(problem.steps) + f"\n</think>\n<answer>{problem.answer}</answer>"


def one_line_expression(steps: tuple[str, ...]) -> str:
    """The whole computation as one expression: ("3 * 6 = 18", "18 + 4 = 22") -> "3 * 6 + 4".

    A sum or difference is bracketed before it is multiplied, so the expression keeps its value.
    """
    expression = steps[0].split(" = ")[0]
    for step in steps[1:]:
        _, op, operand = step.split(" = ")[0].split(" ")
        if op == "*" and ("+" in expression or "-" in expression):
            expression = f"({expression})"
        expression = f"{expression} {op} {operand}"
    return expression


def terse_trace(problem: Problem) -> str:
    """A correct but terse trace: the whole computation on one line, no intermediate results.

    Cold-start data written by people often skips steps like this; a small model imitating it
    must do several operations at once and fails more often than when it writes each step.
    """
    return (f"<think>\n{one_line_expression(problem.steps)} = {problem.answer}\n</think>\n"
            f"<answer>{problem.answer}</answer>")


def plain_solution(problem: Problem) -> str:
    return f"Question: {problem.prompt}\nSolution:\n" + "\n".join(problem.steps) + f"\nThe answer is {problem.answer}."


def drill(rng: random.Random, max_number: int = 30) -> str:
    lines = []
    for _ in range(rng.randint(4, 8)):
        op = rng.choice("+-*")
        a, b = ((rng.randint(2, 9), rng.randint(2, 9)) if op == "*"
                else (rng.randint(0, 2 * max_number), rng.randint(0, max_number)))
        if op == "-" and b > a:
            a, b = b, a
        lines.append(_op(a, op, b)[1])
    return "\n".join(lines)


def split_problems(seed: int, train: int, heldout: int, max_number: int = 30) -> tuple[list[Problem], list[Problem]]:
    """Distinct problems, shuffled; the held-out split shares no prompt with the train split."""
    rng = random.Random(seed)
    seen: set[str] = set()
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < train + heldout:
        attempts += 1
        if attempts > 50 * (train + heldout):
            raise ValueError(f"could only make {len(problems)} distinct problems; ask for fewer")
        p = make_problem(rng, max_number)
        if p.prompt not in seen:
            seen.add(p.prompt)
            problems.append(p)
    return problems[:train], problems[train:]


class ArithmeticProblemsConfig(Config):
    train_problems: int = Field(4000, ge=1)
    heldout_problems: int = Field(500, ge=1)
    cold_start_traces: int = Field(300, ge=0, description="formatted SFT chats from train problems")
    terse_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of cold-start traces that put the "
                                  "whole computation on one line instead of one step per line")
    pretrain_solved: int = Field(3000, ge=0, description="worked train problems in the pretraining text")
    pretrain_drills: int = Field(2000, ge=0, description="documents of plain arithmetic drills")
    max_number: int = Field(30, ge=2, description="largest number a problem states (difficulty)")


class ArithmeticProblemsStage:
    """Generates the problems, the cold-start traces and the pretraining text (see module doc)."""

    def __init__(self, config: ArithmeticProblemsConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        train, heldout = split_problems(ctx.seed, c.train_problems, c.heldout_problems, c.max_number)
        for split, problems in (("train", train), ("heldout", heldout)):
            _write(ctx.path(split, "problems.jsonl"), [
                {"id": f"{split}-{i}", "prompt": p.prompt, "reference": str(p.answer), "steps": list(p.steps)}
                for i, p in enumerate(problems)])
        traces = cold_start_chats(train[: c.cold_start_traces], c.terse_fraction, random.Random(ctx.seed + 2))
        _write(ctx.path("traces", "conversations.jsonl"), traces)
        rng = random.Random(ctx.seed + 1)
        docs = [plain_solution(p) for p in train[-c.pretrain_solved:]] if c.pretrain_solved else []
        docs += [drill(rng, c.max_number) for _ in range(c.pretrain_drills)]
        rng.shuffle(docs)
        _write(ctx.path("documents", "documents.jsonl"), [{"id": f"doc-{i}", "text": t} for i, t in enumerate(docs)])
        metrics = {"train": len(train), "heldout": len(heldout), "traces": min(c.cold_start_traces, len(train)),
                   "documents": len(docs)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"train": ctx.path("train"), "heldout": ctx.path("heldout"),
                                                       "traces": ctx.path("traces"),
                                                       "documents": ctx.path("documents")})


def cold_start_chats(problems: list[Problem], terse_fraction: float, rng: random.Random) -> list[dict]:
    """SFT chats; a seeded ``terse_fraction`` of them use the one-line trace."""
    terse = set(rng.sample(range(len(problems)), round(terse_fraction * len(problems))))
    return [{"messages": [{"role": "user", "content": p.prompt},
                          {"role": "assistant", "content": terse_trace(p) if i in terse else r1_trace(p)}]}
            for i, p in enumerate(problems)]


def _write(uri: str, records: list[dict]) -> None:
    with atomic_open(uri, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
