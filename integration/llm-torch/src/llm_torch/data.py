"""Pretraining batches from a token folder (``llm_core.tokens``): fixed-length blocks, replay mixes.

Blocks are cut in an order that is a pure function of (seed, sample index), so the data position
of a run is just its step: a resumed run reads exactly the batches the first run would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_core.tokens import TokenStream


@dataclass
class PackedBlocks:
    """Fixed blocks of ``seq_len + 1`` tokens (inputs and shifted targets), reshuffled every epoch."""

    stream: TokenStream
    seq_len: int
    seed: int

    def __post_init__(self) -> None:
        self.count = (len(self.stream) - 1) // self.seq_len
        if self.count < 1:
            raise ValueError(f"{self.stream.uri}: {len(self.stream)} tokens are fewer than one sequence "
                             f"of seq_len={self.seq_len}; add data or lower seq_len")
        self._orders: dict[int, np.ndarray] = {}

    def block(self, index: int) -> np.ndarray:
        """The ``index``-th block in training order (epochs wrap around, each with a new order)."""
        epoch, offset = divmod(index, self.count)
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.count)}
        start = int(self._orders[epoch][offset]) * self.seq_len
        return self.stream.read(start, self.seq_len + 1)


@dataclass
class ReplayMix:
    """Sequences from ``primary``, with a seeded share ``ratio`` drawn from ``replay`` instead."""

    primary: PackedBlocks
    replay: PackedBlocks | None
    ratio: float
    seed: int

    def block(self, index: int) -> np.ndarray:
        if self.replay is None or self.ratio == 0:
            return self.primary.block(index)
        # Which source sample ``index`` comes from, and how many earlier samples each source gave,
        # are functions of (seed, index), so a resumed run draws exactly what the first run would.
        from_replay = self._replay_counts(index + 1)
        if from_replay[index + 1] > from_replay[index]:
            return self.replay.block(int(from_replay[index]))
        return self.primary.block(index - int(from_replay[index]))

    def _replay_counts(self, needed: int) -> np.ndarray:
        """counts[i] = how many of samples 0..i-1 come from replay; grown by doubling, same prefix."""
        counts = getattr(self, "_counts", None)
        if counts is None or len(counts) <= needed:
            size = max(needed + 1, 2 * (len(counts) if counts is not None else 1024))
            draws = np.random.default_rng([self.seed, 7]).random(size) < self.ratio
            counts = np.concatenate([[0], np.cumsum(draws)])
            self._counts = counts
        return counts


def global_batch(source: PackedBlocks | ReplayMix, step: int, batch_size: int, rank: int = 0,
                 world: int = 1) -> dict[str, Any]:
    """This rank's rows of the global batch of ``step``: inputs and aligned next-token labels."""
    import torch

    rows = range(step * batch_size, (step + 1) * batch_size)
    mine = [source.block(i) for i in rows][rank::world]
    blocks = torch.from_numpy(np.stack(mine))
    return {"input_ids": blocks[:, :-1].contiguous(), "labels": blocks[:, 1:].contiguous()}
