"""``synthetic_chat``: seeded chat JSONL (arithmetic, copying, counting) with known answers.

Small and learnable, for demos, tests and smoke runs of ``sft``: a model that learned the format
answers in the assistant turn and stops. ``bad_fraction`` mixes in invalid records (no assistant
turn, unknown role, broken JSON) to exercise the rejects path.
"""

from __future__ import annotations

import json
import random
from typing import Any

from pydantic import Field

from llm_core.artifacts import atomic_open
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult

WORDS = """
apple river stone cloud music garden silver window forest bridge candle ocean lantern
meadow harbor pepper violet thunder marble
""".split()


class SyntheticChatConfig(Config):
    num_conversations: int = Field(2000, ge=1)
    multi_turn_fraction: float = Field(0.3, ge=0, le=1)
    system_fraction: float = Field(0.2, ge=0, le=1, description="share with a system message")
    bad_fraction: float = Field(0.0, ge=0, le=1, description="share of invalid records (rejects demo)")


def _turn(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return f"What is {a} + {b}?", f"{a} + {b} = {a + b}."
    if kind == 1:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
        return f"Repeat after me: {words}", words
    word = rng.choice(WORDS)
    return f"How many letters are in the word {word}?", f"The word {word} has {len(word)} letters."


def conversation(rng: random.Random, multi_turn_fraction: float, system_fraction: float) -> dict[str, Any]:
    messages = []
    if rng.random() < system_fraction:
        messages.append({"role": "system", "content": "You are a concise assistant."})
    for _ in range(rng.randint(2, 3) if rng.random() < multi_turn_fraction else 1):
        question, answer = _turn(rng)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def bad_record(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return json.dumps({"messages": [{"role": "user", "content": "Hello?"}]})
    if kind == 1:
        return json.dumps({"messages": [{"role": "wizard", "content": "hi"},
                                        {"role": "assistant", "content": "hello"}]})
    return '{"messages": [{"role": "user", "content": "unterminated'


class SyntheticChatStage:
    """Writes ``conversations/chat.jsonl``."""

    def __init__(self, config: SyntheticChatConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        rng = random.Random(ctx.seed)
        uri = ctx.path("conversations", "chat.jsonl")
        bad = 0
        with atomic_open(uri, "wt", encoding="utf-8") as handle:
            for _ in range(c.num_conversations):
                if rng.random() < c.bad_fraction:
                    handle.write(bad_record(rng) + "\n")
                    bad += 1
                else:
                    handle.write(json.dumps(conversation(rng, c.multi_turn_fraction, c.system_fraction)) + "\n")
        metrics = {"conversations": c.num_conversations, "invalid": bad}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"conversations": ctx.path("conversations")})
