"""``long_documents``: seeded documents whose later text can only be predicted from far back.

A document is a list of statements ``<name> is <value> .``. Every name is stated twice, at two
random places: the first time its value is a random draw (nothing predicts it), the second time
it repeats the first. A model that can look back over the whole distance predicts the repeated
value; one that cannot pays ln(10 ** value_digits) for it (6.9 nats for three digits). Repeat
distances grow with the document, so perplexity by position says how far back a model still
reads. Names are pseudo-words of two or three syllables, values numbers of ``value_digits``
digits (several tokens each).

Outputs: ``train`` (short documents, for pretraining), ``long_train`` (long ones, for continued
training at the extended length) and ``heldout`` (long ones, drawn apart, for evaluation), each a
``docs.jsonl`` of ``{"id", "text"}``.
"""

from __future__ import annotations

import json
import random

from llm_core.artifacts import atomic_open
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_longctx.configs import LongDocumentsConfig

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def pseudo_words(count: int, seed: int) -> list[str]:
    """``count`` distinct names of two or three syllables."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))))
    return sorted(names)


def document(rng: random.Random, names: list[str], statements: int, value_digits: int) -> str:
    """``statements`` statements (rounded down to even): each of statements / 2 names twice."""
    chosen = rng.sample(names, statements // 2)
    value_of = {name: f"{rng.randrange(10 ** value_digits):0{value_digits}d}" for name in chosen}
    order = chosen * 2
    rng.shuffle(order)
    return " ".join(f"{name} is {value_of[name]} ." for name in order)


def write_docs(uri: str, texts: list[str], prefix: str) -> None:
    with atomic_open(uri, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": f"{prefix}-{i}", "text": text}) + "\n")


class LongDocumentsStage:
    def __init__(self, config: LongDocumentsConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        names = pseudo_words(c.names, ctx.seed)
        splits = {"train": (c.train_documents, c.train_statements), "long_train": (c.long_documents,
                  (c.long_statements, c.long_statements)), "heldout": (c.heldout_documents,
                  (c.long_statements, c.long_statements))}
        counts = {}
        for offset, (split, (count, (low, high))) in enumerate(splits.items()):
            rng = random.Random(f"{ctx.seed}-{split}-{offset}")
            texts = [document(rng, names, rng.randint(low, high), c.value_digits) for _ in range(count)]
            write_docs(ctx.path(split, "docs.jsonl"), texts, split)
            counts[f"{split}_documents"] = count
            counts[f"{split}_words"] = sum(len(t.split()) for t in texts)
        ctx.log_metrics(counts)
        return StageResult(metrics=counts, artifacts={s: ctx.path(s) for s in splits})
