"""The tiny-pretrain-sft recipe: it validates (default tests) and, run whole (slow), its losses fall and
the SFT model answers in the chat format it was taught and ends its turn."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from llm_core.artifacts import RunStore
from llm_core.config import load_recipe_file, validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner

RECIPE = Path(__file__).parents[2] / "recipes" / "tiny-pretrain-sft.toml"


@pytest.fixture
def host():
    reset_host()
    yield get_host()
    reset_host()


def test_recipe_validates(host):
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    assert [s.kind for s in recipe.stages] == ["synthetic_text", "pretrain", "synthetic_chat", "sft"]


@pytest.mark.slow
def test_recipe_runs_and_both_losses_fall(host, tmp_path):
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    start = time.perf_counter()
    results = PipelineRunner(recipe, str(tmp_path), host).run()
    elapsed = time.perf_counter() - start
    store = RunStore(str(tmp_path))
    for stage in ("pretrain", "sft"):
        metrics = results[stage].metrics
        assert metrics["final_loss"] < metrics["first_loss"] - 1.0, (stage, metrics)
        curve = [m["loss"] for m in store.read_metrics(stage) if "loss" in m]
        assert min(curve[-5:]) < min(curve[:3])
    print(f"tiny-pretrain-sft took {elapsed:.0f} s")


def _forms() -> dict[str, str]:
    from llm_torch.synthetic_chat import WORDS

    word = "(" + "|".join(WORDS) + ")"
    return {"What": r"\d+ \+ \d+ = \d+\.", "How": rf"The word {word} has \d+ letters\.", "Repeat": rf"{word}( {word})*"}


def chat_probe(checkpoint: str, questions: int = 60, seed: int = 123) -> dict[str, float]:
    """Greedy answers to held-out synthetic questions, per task: the share in the answer's form and the
    share exactly right; and the share of answers that end the turn (``<|im_end|>``)."""
    from llm_core.engines import build_rollout_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import RolloutSpec, SamplingSpec
    from llm_torch.synthetic_chat import _turn

    engine = build_rollout_engine(RolloutSpec(name="torch"), get_registries(), checkpoint=checkpoint)
    tok, rng = engine.tokenizer, random.Random(seed)
    pairs = [_turn(rng) for _ in range(questions)]
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True))
               for q, _ in pairs]
    samples = [g[0] for g in engine.generate(prompts, 1, SamplingSpec(max_new_tokens=24, temperature=0))]
    answers = [tok.decode(s.token_ids).strip() for s in samples]
    forms = _forms()
    out = {}
    for kind, task in (("What", "sum"), ("How", "letters"), ("Repeat", "repeat")):
        rows = [(a, want, s) for (q, want), a, s in zip(pairs, answers, samples, strict=True) if q.startswith(kind)]
        out[f"{task}_in_form"] = sum(re.fullmatch(forms[kind], a) is not None for a, _, _ in rows) / len(rows)
        out[f"{task}_exact"] = sum(a == want for a, want, _ in rows) / len(rows)
    out["ended_turn"] = sum(s.finish_reason == "stop" for s in samples) / questions
    return out


@pytest.mark.slow
def test_sft_model_answers_in_the_taught_format(host, tmp_path):
    """What the README claims of this recipe: SFT teaches the form of the sum and letter-count answers
    and where a turn ends; not the arithmetic, the counting or the copying (few are right at this size)."""
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    PipelineRunner(recipe, str(tmp_path), host).run()
    probe = chat_probe(str(tmp_path / "sft" / "checkpoint"))
    print(f"tiny-pretrain-sft chat probe: {probe}")
    # measured 1.0, 0.59 and 0.7 (the README); the bounds leave room for other CPUs' rounding
    assert probe["sum_in_form"] >= 0.8 and probe["letters_in_form"] >= 0.4 and probe["ended_turn"] >= 0.5, probe
