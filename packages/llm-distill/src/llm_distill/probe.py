"""Exposure bias, measured: the teacher-student KL on the student's own samples against the teacher's.

A student trained on the teacher's sequences only (teacher forcing) meets its own prefixes at
inference time; the KL(P_teacher || Q_student) per token on the student's samples, minus the same
KL on the teacher's samples of the same prompts, is how much worse it fares there (the gap GKD
and MiniLLM set out to close). Both KLs are exact, over the whole vocabulary, averaged over the
answer tokens of every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_core.engines import RolloutEngine, TrainEngine
from llm_core.specs import SamplingSpec
from llm_distill.examples import padded
from llm_distill.losses import kl, reduce


def answers(engine: RolloutEngine, prompts: Sequence[list[int]], sampling: SamplingSpec,
            chunk: int = 32) -> list[list[int]]:
    """One sampled answer per prompt (an empty one becomes the end-of-text token)."""
    out = []
    for start in range(0, len(prompts), chunk):
        part = list(prompts[start:start + chunk])
        seeded = sampling if sampling.seed is None else sampling.with_seed(sampling.seed + start)
        for group in engine.generate(part, n=1, sampling=seeded):
            out.append(group[0].token_ids or [engine.tokenizer.eos_id])
    return out


def vocabulary_order(values: Any, ids: Any) -> Any:
    """A whole distribution (``top_logprobs(batch, None)``) back in token order."""
    import torch

    return torch.empty_like(values).scatter_(-1, ids.long(), values)


def teacher_student_kl(teacher: TrainEngine, student: TrainEngine, prompts: Sequence[list[int]],
                       completions: Sequence[list[int]], chunk: int = 32) -> float:
    """Mean KL(P_teacher || Q_student) per answer token, over every (prompt, completion)."""
    total, tokens = 0.0, 0.0
    for start in range(0, len(prompts), chunk):
        rows = [p + c for p, c in zip(prompts[start:start + chunk], completions[start:start + chunk], strict=True)]
        masks = [[0] * len(p) + [1] * len(c)
                 for p, c in zip(prompts[start:start + chunk], completions[start:start + chunk], strict=True)]
        batch = padded(rows, masks, teacher.tokenizer.pad_id)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        p = vocabulary_order(*teacher.top_logprobs(inputs, None))
        q = vocabulary_order(*student.top_logprobs(inputs, None))
        mask = batch["loss_mask"].float()
        target = mask.clone()
        target[:, :-1] = mask[:, 1:]  # position t predicts token t + 1
        target[:, -1] = 0
        total += float(reduce(kl(p, q), target, "token_mean")) * float(target.sum())
        tokens += float(target.sum())
    return total / max(tokens, 1.0)


def exposure(teacher: TrainEngine, student: TrainEngine, student_rollout: RolloutEngine,
             prompts: Sequence[list[int]], teacher_answers: Sequence[list[int]],
             sampling: SamplingSpec) -> dict[str, float]:
    """KL on the student's own samples, on the teacher's, and the gap between them."""
    own = answers(student_rollout, prompts, sampling)
    on_own = teacher_student_kl(teacher, student, prompts, own)
    on_teacher = teacher_student_kl(teacher, student, prompts, teacher_answers)
    return {"kl_student_samples": on_own, "kl_teacher_samples": on_teacher, "exposure_gap": on_own - on_teacher,
            "student_answer_tokens": sum(map(len, own)) / max(1, len(own))}
