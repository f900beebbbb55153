"""The nanotron engine passes the engine conformance suite of llm_core.testing at TP=1 and TP=2.

The rollout checks run the embedded ``torch`` rollout engine on folders this engine exported, so
they check nanotron's HF export and its log-probs against another engine's sampler as well."""

from __future__ import annotations

import pytest

from llm_core.testing import ROLLOUT_ENGINE_CHECKS, TRAIN_ENGINE_CHECKS, EngineHarness

SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}


def make_harness(tp, registries, tokenizer_dir, tmp_path):
    from llm_core.engines import build_rollout_engine, build_train_engine
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec, RolloutSpec

    spec = EngineSpec(name="nanotron", options={"tp": tp})
    optimizer = OptimizerSpec(lr=1e-2, schedule="constant")

    def train(seed=0):
        return build_train_engine(spec, registries, model=ModelShape(**SHAPE), tokenizer=tokenizer_dir,
                                  optimizer=optimizer, total_steps=50, seed=seed)

    return EngineHarness(
        train=train,
        rollout=lambda folder: build_rollout_engine(RolloutSpec(name="torch"), registries, checkpoint=folder),
        load=lambda folder: build_train_engine(spec, registries, checkpoint=folder, optimizer=optimizer,
                                               total_steps=50),
        vocab_size=400, workdir=tmp_path)


# The default suite starts one pool of workers, at TP=2 (which exercises all TP=1 does, and sharding);
# each further layout costs a pool start (a torch import per process): TP=1 is slow.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("tp", [pytest.param(1, marks=SLOW), 2], ids=["tp1", "tp2"])
@pytest.mark.parametrize("check", sorted(TRAIN_ENGINE_CHECKS))
def test_train_engine_contract(check, tp, registries, tokenizer_dir, tmp_path):
    TRAIN_ENGINE_CHECKS[check](make_harness(tp, registries, tokenizer_dir, tmp_path))


@pytest.mark.parametrize("tp", [pytest.param(1, marks=SLOW), 2], ids=["tp1", "tp2"])
@pytest.mark.parametrize("check", sorted(ROLLOUT_ENGINE_CHECKS))
def test_exports_serve_the_torch_rollout_engine(check, tp, registries, tokenizer_dir, tmp_path):
    ROLLOUT_ENGINE_CHECKS[check](make_harness(tp, registries, tokenizer_dir, tmp_path))
