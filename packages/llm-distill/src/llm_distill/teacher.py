"""The teacher's side of distillation: the vocabulary check, its distribution per batch, the top-k cache.

The teacher is a frozen ``TrainEngine``; what it gives a batch is ``top_logprobs(batch, k)``,
added to the batch as ``teacher_top_logprobs`` / ``teacher_top_ids`` (B, W, k) for the student's
loss. The cache holds those k values and ids at the target positions of every example of a data
set, computed once (``TopKCache.build``), in one ``teacher_topk.npz`` of the stage folder.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_core.artifacts import atomic_open, exists
from llm_core.engines import Batch, Tokenizer, TrainEngine
from llm_distill.examples import Example, padded, target_positions

TEACHER_KEYS = ("teacher_top_logprobs", "teacher_top_ids")


def check_same_vocabulary(student: TrainEngine, teacher: TrainEngine, student_name: str, teacher_name: str) -> int:
    """The vocabulary size both share; an error naming both tokenizers when they differ in size,
    special ids, any token, or the width of the models' next-token distributions."""
    a, b = student.tokenizer, teacher.tokenizer
    problem = _tokenizer_difference(a, b)
    if problem is None:
        student_width, teacher_width = _vocabulary_width(student), _vocabulary_width(teacher)
        if student_width != teacher_width:
            problem = f"the models predict over {student_width} vs {teacher_width} tokens"
    if problem is not None:
        raise ValueError(f"student tokenizer ({student_name}) and teacher tokenizer ({teacher_name}) differ: "
                         f"{problem}. Distillation compares the two next-token distributions token by token, "
                         "so both need the same vocabulary: build the student with the teacher's tokenizer "
                         "(a pretrain stage with inputs.tokenizer = the teacher's checkpoint folder)")
    return a.vocab_size


def _tokenizer_difference(a: Tokenizer, b: Tokenizer) -> str | None:
    if a.vocab_size != b.vocab_size:
        return f"vocab_size {a.vocab_size} vs {b.vocab_size}"
    for name in ("eos_id", "pad_id", "bos_id"):
        if getattr(a, name) != getattr(b, name):
            return f"{name} {getattr(a, name)} vs {getattr(b, name)}"
    for token in range(a.vocab_size):
        left, right = a.decode([token], skip_special_tokens=False), b.decode([token], skip_special_tokens=False)
        if left != right:
            return f"token {token} is {left!r} vs {right!r}"
    return None


def _vocabulary_width(engine: TrainEngine) -> int:
    """The size of the model's next-token distribution (an imported model may pad its vocabulary)."""
    values, _ = engine.top_logprobs({"input_ids": [[engine.tokenizer.eos_id]]}, None)
    return int(values.shape[-1])


def with_teacher(batch: dict[str, Any], teacher: TrainEngine, top_k: int | None) -> dict[str, Any]:
    """The batch plus the teacher's distribution at every position (online scoring)."""
    values, ids = teacher.top_logprobs(_model_inputs(batch), top_k)
    return {**batch, "teacher_top_logprobs": values, "teacher_top_ids": ids}


def _model_inputs(batch: Batch) -> dict[str, Any]:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@dataclass
class TopKCache:
    """The teacher's top-k at the target positions of each example, flattened: example i's
    positions are rows ``offsets[i]:offsets[i + 1]`` of ``values`` (fp32) and ``ids``."""

    offsets: np.ndarray
    values: np.ndarray
    ids: np.ndarray
    vocab_size: int

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @classmethod
    def build(cls, teacher: TrainEngine, examples: Sequence[Example], top_k: int | None, pad_id: int,
              batch_size: int = 16) -> TopKCache:
        """Score every example once (in batches) and keep only its target positions."""
        offsets, values, ids = [0], [], []
        vocab = _vocabulary_width(teacher)
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch = padded([e.ids for e in chunk], [e.mask for e in chunk], pad_id)
            top, top_ids = teacher.top_logprobs(_model_inputs(batch), top_k)
            for row, example in enumerate(chunk):
                positions = target_positions(example.mask)
                values.append(top[row, positions].float().cpu().numpy())
                ids.append(top_ids[row, positions].cpu().numpy().astype(_id_dtype(vocab)))
                offsets.append(offsets[-1] + len(positions))
        return cls(np.asarray(offsets, dtype=np.int64), np.concatenate(values), np.concatenate(ids), vocab)

    def save(self, uri: str) -> int:
        """Write the cache atomically; returns its size in bytes."""
        buffer = io.BytesIO()
        np.savez(buffer, offsets=self.offsets, values=self.values, ids=self.ids,
                 vocab_size=np.asarray(self.vocab_size))
        data = buffer.getvalue()
        with atomic_open(uri, "wb") as handle:
            handle.write(data)
        return len(data)

    @classmethod
    def load(cls, uri: str) -> TopKCache | None:
        import fsspec

        if not exists(uri):
            return None
        with fsspec.open(uri, "rb") as handle:
            arrays = np.load(io.BytesIO(handle.read()))
            return cls(arrays["offsets"], arrays["values"], arrays["ids"], int(arrays["vocab_size"]))

    def full_vocabulary_bytes(self) -> int:
        """What the same positions would take as whole fp32 distributions (what top-k saves)."""
        return int(self.values.shape[0]) * self.vocab_size * 4

    def attach(self, batch: dict[str, Any], indices: Sequence[int], examples: Sequence[Example]) -> dict[str, Any]:
        """The batch plus the cached distributions at the target positions of its examples; other
        positions (masked out by the loss) hold a uniform distribution, so nothing there is NaN."""
        import torch

        rows, width = batch["input_ids"].shape
        values = torch.full((rows, width, self.k), -math.log(self.vocab_size))
        ids = torch.arange(self.k).expand(rows, width, self.k).clone()
        for row, index in enumerate(indices):
            positions = target_positions(examples[index].mask)
            span = slice(int(self.offsets[index]), int(self.offsets[index + 1]))
            values[row, positions] = torch.from_numpy(self.values[span])
            ids[row, positions] = torch.from_numpy(self.ids[span].astype(np.int64))
        return {**batch, "teacher_top_logprobs": values, "teacher_top_ids": ids}


def _id_dtype(vocab: int) -> Any:
    return np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.int32
