"""What the sampling stages share: problems on disk, rendering, chunked generation, scoring.

Problems are records ``{"prompt": str, "reference": any?, "id": str?}`` (JSONL, Parquet or a saved
HF dataset), the format of llm-rlvr's ``arithmetic_problems``; malformed ones go to rejects.
Scoring calls a verifier (any registered one, the ``reward_model`` scorer included) in this
process, batched when the verifier has ``verify_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_core import data_io
from llm_core.data_io import RecordGate
from llm_core.engines import RolloutEngine, Tokenizer
from llm_core.specs import SamplingSpec
from llm_core.types import Message, Problem, Sample, Verdict


def load_problems(uri: str, rejects_uri: str, max_rejects_fraction: float = 0.5,
                  gate: RecordGate | None = None) -> list[Problem]:
    """The prompts of an input; a ``reference`` is kept where a record has one (pairs, PPO and
    Constitutional AI need none)."""
    return data_io.load_problems(uri, rejects_uri, max_rejects_fraction, gate, need_reference=False, what="prompts")


def user_turn(prompt: str, system_prompt: str = "") -> list[Message]:
    return ([Message("system", system_prompt)] if system_prompt else []) + [Message("user", prompt)]


def prompt_ids(tokenizer: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """Ids of a conversation ready for the assistant to answer (the pinned chat template)."""
    return tokenizer.encode(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))


def generate(engine: RolloutEngine, prompts: Sequence[Sequence[int]], n: int, sampling: SamplingSpec,
             chunk_prompts: int = 16) -> list[list[Sample]]:
    """``n`` samples per prompt, in chunks; chunk ``i`` samples with seed ``sampling.seed + i``."""
    out: list[list[Sample]] = []
    for c, start in enumerate(range(0, len(prompts), chunk_prompts)):
        seeded = sampling if sampling.seed is None else sampling.with_seed(sampling.seed + c)
        out += engine.generate(list(prompts[start:start + chunk_prompts]), n=n, sampling=seeded)
    return out


def completion_text(tokenizer: Tokenizer, sample: Sample) -> str:
    """The sample's text without the end-of-turn / EOS token that stopped it."""
    ids = sample.token_ids[:-1] if sample.finish_reason == "stop" and sample.token_ids else sample.token_ids
    return tokenizer.decode(ids)


def score(verifier: Any, prompts: Sequence[str], completions: Sequence[str],
          references: Sequence[Any]) -> list[Verdict]:
    """Verdicts of a verifier on completions, batched when it can (``verify_batch``); a verifier that
    raises on one completion scores it 0 with the error as reason."""
    if hasattr(verifier, "verify_batch"):
        return list(verifier.verify_batch(list(prompts), list(completions), list(references)))
    out = []
    for prompt, completion, reference in zip(prompts, completions, references, strict=True):
        try:
            out.append(verifier.verify(prompt, completion, reference))
        except Exception as exc:  # noqa: BLE001 - one bad completion must not stop a stage
            out.append(Verdict(0.0, False, f"verifier error: {type(exc).__name__}: {exc}"[:200]))
    return out
