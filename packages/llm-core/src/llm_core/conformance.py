"""The engine conformance suite: every engine runs it against itself (``llm_core.testing`` exports it).

An engine's test module describes how to build it (``EngineHarness``) and runs every check::

    from llm_core.testing import ROLLOUT_ENGINE_CHECKS, TRAIN_ENGINE_CHECKS, EngineHarness

    @pytest.mark.parametrize("check", sorted(TRAIN_ENGINE_CHECKS))
    def test_train_engine_contract(check, harness):
        TRAIN_ENGINE_CHECKS[check](harness)

Each check builds fresh engines through the harness, so checks are independent. They cover every
method of ``llm_core.engines``: shapes and conventions of ``logprobs`` and ``top_logprobs``, ``train_step`` (the loss
receives what it names, micro-batches accumulate to the full batch), ``forward_backward`` +
``optimizer_step``, ``values``, ``reference``, ``save`` / ``load`` (and a resumed training loop
equal to an uninterrupted one), ``export_hf`` / ``hf_state_dict``, and for rollouts: groups and
order, stop tokens, seeded reproducibility, greedy decoding, the parity between sampled-token
log-probs and ``logprobs``, and ``update_weights`` from either weight form. torch is imported
inside the checks only.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_core.builtins.losses import cross_entropy  # the suite's loss: mean NLL over the target tokens
from llm_core.engines import RolloutEngine, Tokenizer, TrainEngine
from llm_core.specs import SamplingSpec
from llm_core.training import Trainer


@dataclass
class EngineHarness:
    """How the suite builds the engine under test.

    ``train(seed=0)`` returns a fresh trainable engine (a small model, AdamW at a constant lr that
    visibly lowers the loss in a few steps); ``rollout(weights)`` a rollout engine on the weights of
    an HF folder; ``load(folder)`` a trainable engine from a checkpoint folder (for save / load).
    Tolerances are for fp32 on CPU; an engine with another numeric path may loosen them.
    """

    train: Callable[..., TrainEngine]
    rollout: Callable[[str], RolloutEngine]
    load: Callable[[str], TrainEngine]
    vocab_size: int
    value_head: Callable[[], TrainEngine] | None = None  # an engine with a value head, if supported
    logprob_tolerance: float = 1e-4
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llmt-conformance-")))

    def batch(self, rows: int = 4, length: int = 24, seed: int = 0) -> dict[str, Any]:
        import torch

        ids = torch.randint(3, self.vocab_size, (rows, length), generator=torch.Generator().manual_seed(seed))
        return {"input_ids": ids.tolist()}

    def folder(self, name: str) -> str:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)


# --- TrainEngine ---------------------------------------------------------------------------------


def check_protocols(h: EngineHarness) -> None:
    engine = h.train()
    assert isinstance(engine, TrainEngine), f"{type(engine).__name__} lacks TrainEngine methods"
    assert isinstance(engine.tokenizer, Tokenizer), "engine.tokenizer lacks Tokenizer methods"
    assert engine.step == 0 and isinstance(engine.is_main, bool)
    ids = engine.tokenizer.encode("hello world")
    assert ids and all(isinstance(i, int) for i in ids)
    assert isinstance(engine.tokenizer.decode(ids), str)
    assert engine.tokenizer.eos_id in engine.tokenizer.stop_ids()


def check_logprobs(h: EngineHarness) -> None:
    import torch

    engine = h.train()
    rows = [[5, 6, 7, 8, 9], [10, 11, 12]]  # ragged: right-padded by the engine
    lp = engine.logprobs({"input_ids": rows})
    assert tuple(lp.shape) == (2, 5) and lp.dtype == torch.float32
    assert (lp <= 0).all(), "log-probabilities are never positive"
    assert (lp[0, -1] == 0) and (lp[1, 2:] == 0).all(), "no label after the last real token: 0"
    masked = engine.logprobs({"input_ids": rows, "loss_mask": [[0, 0, 1, 1, 1], [0, 1, 1]]})
    assert (masked[0, :1] == 0).all() and torch.allclose(masked[0, 1:4], lp[0, 1:4])
    labels = [[-100, 7, -100, 9, -100]]
    explicit = engine.logprobs({"input_ids": [rows[0]], "labels": labels})
    assert explicit[0, 0] == 0 and torch.allclose(explicit[0, 1], lp[0, 1]) and explicit[0, 2] == 0


def check_top_logprobs(h: EngineHarness) -> None:
    """The whole distribution sums to 1, is sorted, holds every token once and agrees with
    ``logprobs`` at the labels; top-k is its first k entries, whatever the loss mask says."""
    import torch

    engine = h.train()
    engine.train_step(h.batch(), cross_entropy)  # away from the initial weights
    rows = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]  # ragged: right-padded by the engine
    values, ids = engine.top_logprobs({"input_ids": rows})
    assert tuple(values.shape) == tuple(ids.shape) == (2, 6, h.vocab_size), tuple(values.shape)
    assert values.dtype == torch.float32 and not torch.is_floating_point(ids)
    assert (values[..., :-1] >= values[..., 1:]).all(), "values are sorted from the largest"
    assert (values.exp().sum(-1) - 1).abs().max().item() < 1e-4, "the whole vocabulary's probabilities sum to 1"
    assert torch.equal(ids.sort(-1).values, torch.arange(h.vocab_size).expand_as(ids)), "every token once"
    by_token = torch.empty_like(values).scatter_(-1, ids, values)  # back in vocabulary order
    labels = engine.logprobs({"input_ids": rows})
    for row, tokens in enumerate(rows):
        targets = torch.tensor(tokens[1:])[:, None]
        picked = by_token[row, :len(tokens) - 1].gather(-1, targets)[:, 0]
        worst = (picked - labels[row, :len(tokens) - 1]).abs().max().item()
        assert worst <= h.logprob_tolerance, f"top_logprobs at the label's id differs from logprobs() by {worst}"
    top, top_ids = engine.top_logprobs({"input_ids": rows, "loss_mask": [[0, 1, 1, 1, 1, 1], [0, 1, 1]]}, k=5)
    assert tuple(top.shape) == tuple(top_ids.shape) == (2, 6, 5)
    assert (top - values[..., :5]).abs().max().item() <= h.logprob_tolerance, "top-k is the largest k, sorted"
    assert (by_token.gather(-1, top_ids) - top).abs().max().item() <= h.logprob_tolerance, \
        "top-k ids name the tokens of their values"


def check_train_step(h: EngineHarness) -> None:
    engine = h.train()
    batch = h.batch()
    seen: dict[str, Any] = {}

    def loss(logprobs, mask, weights):
        seen["weights"] = weights
        return cross_entropy(logprobs, mask), {"custom": 1.5}

    first = engine.train_step({**batch, "weights": [1.0, 2.0, 3.0, 4.0]}, loss)
    assert {"loss", "tokens", "lr", "grad_norm", "custom"} <= set(first), sorted(first)
    assert first["tokens"] == 4 * 23 and first["custom"] == 1.5 and engine.step == 1
    assert tuple(seen["weights"].shape) == (4,)
    losses = [engine.train_step(batch, cross_entropy)["loss"] for _ in range(6)]
    assert losses[-1] < first["loss"], f"the loss did not fall on a fixed batch: {first['loss']} -> {losses}"
    assert all(math.isfinite(x) for x in losses)


def check_micro_batches(h: EngineHarness) -> None:
    import torch

    batch = h.batch(rows=4)
    whole, split = h.train(seed=1), h.train(seed=1)
    a = whole.train_step(batch, cross_entropy)
    b = split.train_step(batch, cross_entropy, micro_batch_size=2)
    assert abs(a["loss"] - b["loss"]) < 1e-5, (a["loss"], b["loss"])
    after = torch.stack([whole.logprobs(batch), split.logprobs(batch)])
    assert (after[0] - after[1]).abs().max().item() < 1e-4, "micro-batches must accumulate to the batch gradient"


def check_forward_backward(h: EngineHarness) -> None:
    import torch

    batch = h.batch(rows=4)
    halves = [{"input_ids": batch["input_ids"][:2]}, {"input_ids": batch["input_ids"][2:]}]
    stepped, manual = h.train(seed=2), h.train(seed=2)
    stepped.train_step(batch, cross_entropy)
    for half in halves:
        manual.forward_backward(half, cross_entropy, scale=0.5)
    metrics = manual.optimizer_step()
    assert {"lr", "grad_norm"} <= set(metrics) and manual.step == 1
    diff = (stepped.logprobs(batch) - manual.logprobs(batch)).abs().max().item()
    assert diff < 1e-4, f"train_step and forward_backward x2 + optimizer_step differ by {diff}"
    assert torch.isfinite(manual.logprobs(batch)).all()


def check_values(h: EngineHarness) -> None:
    if h.value_head is None:
        return
    engine = h.value_head()
    batch = {"input_ids": [[5, 6, 7, 8], [9, 10, 11, 12]], "returns": [1.0, -1.0]}
    assert tuple(engine.values(batch).shape) == (2, 4)

    def value_loss(values, returns):
        return ((values[:, -1] - returns) ** 2).mean()

    curve = [engine.train_step(batch, value_loss)["loss"] for _ in range(15)]
    assert curve[-1] < curve[0] / 2, curve


def check_reference(h: EngineHarness) -> None:
    import torch

    engine = h.train()
    batch = h.batch()
    reference = engine.reference()
    before = reference.logprobs(batch)
    assert torch.equal(before, engine.logprobs(batch)), "a reference starts as the current weights"
    for _ in range(2):
        engine.train_step(batch, cross_entropy)
    assert torch.equal(reference.logprobs(batch), before), "training must not move the frozen reference"
    assert not torch.equal(engine.logprobs(batch), before)


def check_save_load(h: EngineHarness) -> None:
    import torch

    batch = h.batch()
    engine = h.train(seed=3)
    engine.train_step(batch, cross_entropy)
    folder = h.folder("save-load")
    engine.save(folder, extra_state={"cursor": 7, "note": "kept"})
    expected = engine.train_step(batch, cross_entropy)
    restored = h.load(folder)
    assert restored.load(folder) == {"cursor": 7, "note": "kept"}
    assert restored.step == 1, "the optimizer step is part of the saved state"
    again = restored.train_step(batch, cross_entropy)
    assert abs(again["loss"] - expected["loss"]) < 1e-6 and again["lr"] == expected["lr"]
    assert torch.allclose(restored.logprobs(batch), engine.logprobs(batch), atol=1e-6), \
        "optimizer state must survive save / load (the next step lands on the same weights)"


def check_resumed_loop(h: EngineHarness) -> None:
    """The one training loop, interrupted after 4 of 6 steps and resumed on a new engine, ends
    exactly where an uninterrupted loop ends (losses and weights)."""
    batch_for = lambda step: h.batch(seed=100 + step)  # noqa: E731 - a pure function of the step
    whole = Trainer(h.train(seed=4), batch_for, cross_entropy, steps=6, log_every=1)
    whole.run()
    state = h.folder("resume")
    Trainer(h.train(seed=4), batch_for, cross_entropy, steps=4, log_every=1, checkpoint_every=2,
            state_uri=state, keep_state=True).run()
    resumed = Trainer(h.train(seed=4), batch_for, cross_entropy, steps=6, log_every=1, checkpoint_every=2,
                      state_uri=state)
    assert resumed.start_step() == 4
    resumed.run()
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history[4:]]
    probe = h.batch(seed=999)
    assert (whole.engine.logprobs(probe) - resumed.engine.logprobs(probe)).abs().max().item() < 1e-6


def check_export_hf(h: EngineHarness) -> None:
    import torch

    engine = h.train(seed=5)
    batch = h.batch()
    engine.train_step(batch, cross_entropy)
    folder = h.folder("export")
    engine.export_hf(folder, summary={"stage": "conformance"})
    for name in ("config.json", "tokenizer.json"):
        assert (Path(folder) / name).exists(), f"export_hf wrote no {name}"
    assert list(Path(folder).glob("*.safetensors")), "export_hf wrote no safetensors weights"
    reloaded = h.load(folder)
    assert torch.allclose(reloaded.logprobs(batch), engine.logprobs(batch), atol=1e-6), \
        "an exported folder loads back with the same log-probs"
    names = set(engine.hf_state_dict())
    assert "model.embed_tokens.weight" in names and any(n.endswith("self_attn.q_proj.weight") for n in names)


# --- RolloutEngine -------------------------------------------------------------------------------


def _exported(h: EngineHarness, name: str, seed: int = 6, steps: int = 0) -> tuple[TrainEngine, str]:
    engine = h.train(seed=seed)
    for _ in range(steps):
        engine.train_step(h.batch(seed=seed), cross_entropy)
    folder = h.folder(name)
    engine.export_hf(folder)
    return engine, folder


def check_generate_groups(h: EngineHarness) -> None:
    _, folder = _exported(h, "generate")
    engine = h.rollout(folder)
    assert isinstance(engine, RolloutEngine)
    prompts = [[5, 17, 42], [8], [3, 9, 27, 81, 100]]
    groups = engine.generate(prompts, n=3, sampling=SamplingSpec(max_new_tokens=8, seed=1))
    assert [len(g) for g in groups] == [3, 3, 3], "one group of n samples per prompt, in prompt order"
    for prompt, group in zip(prompts, groups, strict=True):
        for sample in group:
            assert sample.prompt_ids == prompt
            assert 0 < len(sample.token_ids) == len(sample.logprobs) <= 8
            assert all(lp <= 0 for lp in sample.logprobs)
            assert sample.finish_reason in ("stop", "length")
    again = engine.generate(prompts, n=3, sampling=SamplingSpec(max_new_tokens=8, seed=1))
    assert [[s.token_ids for s in g] for g in groups] == [[s.token_ids for s in g] for g in again], \
        "a seed makes sampling reproducible"


def check_stop_tokens(h: EngineHarness) -> None:
    _, folder = _exported(h, "stops")
    engine = h.rollout(folder)
    greedy = SamplingSpec(max_new_tokens=10, temperature=0)
    free = engine.generate([[11, 12, 13]], 1, greedy)[0][0]
    if len(free.token_ids) < 4:
        return  # stopped early on its own: nothing to cut
    stop = free.token_ids[3]
    cut = engine.generate([[11, 12, 13]], 1, greedy.model_copy(update={"stop_token_ids": (stop,)}))[0][0]
    first = free.token_ids.index(stop)
    assert cut.token_ids == free.token_ids[:first + 1] and cut.finish_reason == "stop", \
        "a stop token ends the sample and is kept in it"


def check_greedy_and_logprob_parity(h: EngineHarness) -> None:
    import torch

    trained, folder = _exported(h, "parity", steps=3)
    engine = h.rollout(folder)
    prompt = [5, 6, 7, 8]
    greedy = engine.generate([prompt], 1, SamplingSpec(max_new_tokens=8, temperature=0))[0][0]
    ids = list(prompt)
    for _ in greedy.token_ids:
        ids.append(int(torch.argmax(_next_token_scores(trained, ids, h.vocab_size))))
    assert greedy.token_ids == ids[len(prompt):], "greedy decoding is the argmax of the teacher-forced model"
    sampled = engine.generate([prompt], 2, SamplingSpec(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=3))[0]
    worst = 0.0
    for sample in sampled:
        row = prompt + sample.token_ids
        forced = trained.logprobs({"input_ids": [row]})[0, len(prompt) - 1:len(row) - 1]
        worst = max(worst, (forced - torch.tensor(sample.logprobs)).abs().max().item())
    assert worst <= h.logprob_tolerance, f"sampled-token log-probs differ from logprobs() by {worst}"


def _next_token_scores(engine: TrainEngine, ids: list[int], vocab_size: int) -> Any:
    """log p(v | ids) for every token v, from ``logprobs`` alone (one row per candidate token)."""
    import torch

    rows = [ids + [v] for v in range(vocab_size)]
    scores = []
    for start in range(0, len(rows), 256):
        chunk = rows[start:start + 256]
        scores.append(engine.logprobs({"input_ids": chunk})[:, len(ids) - 1])
    return torch.cat(scores)


def check_update_weights(h: EngineHarness) -> None:
    _, before = _exported(h, "update-before", seed=7)
    trained, after = _exported(h, "update-after", seed=8, steps=4)
    engine = h.rollout(before)
    greedy = SamplingSpec(max_new_tokens=8, temperature=0)
    prompts = [[5, 6, 7, 8], [9, 10]]
    expected = [g[0].token_ids for g in h.rollout(after).generate(prompts, 1, greedy)]
    engine.update_weights(trained.hf_state_dict())
    assert [g[0].token_ids for g in engine.generate(prompts, 1, greedy)] == expected, \
        "after update_weights(tensors), greedy decoding follows the new weights token for token"
    engine.update_weights(before)
    engine.update_weights(after)
    assert [g[0].token_ids for g in engine.generate(prompts, 1, greedy)] == expected, \
        "after update_weights(folder), greedy decoding follows the new weights token for token"
    engine.sleep()
    engine.wake()
    assert [g[0].token_ids for g in engine.generate(prompts, 1, greedy)] == expected


TRAIN_ENGINE_CHECKS: dict[str, Callable[[EngineHarness], None]] = {
    "protocols": check_protocols, "logprobs": check_logprobs, "top_logprobs": check_top_logprobs,
    "train_step": check_train_step,
    "micro_batches": check_micro_batches, "forward_backward": check_forward_backward, "values": check_values,
    "reference": check_reference, "save_load": check_save_load, "resumed_loop": check_resumed_loop,
    "export_hf": check_export_hf,
}
ROLLOUT_ENGINE_CHECKS: dict[str, Callable[[EngineHarness], None]] = {
    "generate_groups": check_generate_groups, "stop_tokens": check_stop_tokens,
    "greedy_and_logprob_parity": check_greedy_and_logprob_parity, "update_weights": check_update_weights,
}
