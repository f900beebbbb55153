"""The embedded engine passes the engine conformance suite of llm_core.testing, every check."""

from __future__ import annotations

import pytest

from llm_core.testing import ROLLOUT_ENGINE_CHECKS, TRAIN_ENGINE_CHECKS, EngineHarness

SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}


@pytest.fixture
def harness(make_engine, registries, tokenizer_dir, tmp_path):
    from llm_core.engines import build_rollout_engine
    from llm_core.specs import RolloutSpec
    from llm_torch.tokenizer import TextTokenizer

    return EngineHarness(
        train=lambda seed=0: make_engine(SHAPE, lr=1e-2, total_steps=50, seed=seed),
        rollout=lambda folder: build_rollout_engine(RolloutSpec(name="torch"), registries, checkpoint=folder),
        load=lambda folder: make_engine(checkpoint=folder, lr=1e-2, total_steps=50),
        value_head=lambda: make_engine(SHAPE, value_head=True),
        vocab_size=TextTokenizer.load(tokenizer_dir).vocab_size,
        workdir=tmp_path)


@pytest.mark.parametrize("check", sorted(TRAIN_ENGINE_CHECKS))
def test_train_engine_contract(check, harness):
    TRAIN_ENGINE_CHECKS[check](harness)


@pytest.mark.parametrize("check", sorted(ROLLOUT_ENGINE_CHECKS))
def test_rollout_engine_contract(check, harness):
    ROLLOUT_ENGINE_CHECKS[check](harness)
