"""Requests the engine cannot run fail before any process starts, naming the option and the fix."""

from __future__ import annotations

import json

import pytest

from llm_nanotron import pool
from llm_nanotron.checks import EngineSetupError

SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}


@pytest.fixture
def no_spawn(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a worker pool was started for a request that cannot run")

    monkeypatch.setattr(pool, "WorkerPool", refuse)


@pytest.fixture
def build(registries, tokenizer_dir, no_spawn):
    from llm_core.engines import build_train_engine
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

    def make(shape=SHAPE, checkpoint=None, device="cpu", precision="fp32", **options):
        source = {"checkpoint": checkpoint} if checkpoint else {"model": ModelShape(**shape),
                                                                "tokenizer": tokenizer_dir}
        spec = EngineSpec(name="nanotron", device=device, precision=precision, options=options)
        return build_train_engine(spec, registries, **source, optimizer=OptimizerSpec())

    return make


@pytest.mark.parametrize(("options", "shape", "expected"), [
    ({"tp": 3}, SHAPE, "engine.options.tp = 3 does not divide the model's attention heads"),
    ({"tp": 4}, SHAPE, "num_kv_heads = 2"),
    ({"pp": 3}, SHAPE, "engine.options.pp = 3 is more pipeline stages than the model has layers"),
    ({}, {**SHAPE, "rope_theta": 500000.0}, "fixed RoPE base of 10,000"),
])
def test_layouts_and_shapes_it_cannot_run(build, options, shape, expected):
    with pytest.raises(EngineSetupError, match=expected):
        build(shape, **options)


def test_every_problem_is_reported_at_once(build):
    with pytest.raises(EngineSetupError) as caught:
        build({**SHAPE, "rope_theta": 1e6}, tp=3, pp=4)
    assert len(caught.value.problems) >= 3


def test_gpus_are_counted_and_bf16_needs_them(build, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EngineSetupError, match=r"tp \* pp \* dp = 2 \* 1 \* 1 = 2 processes need one GPU each"):
        build(device="cuda", tp=2)
    with pytest.raises(EngineSetupError, match="bf16"):
        build(precision="bf16")


def test_checkpoints_it_cannot_read(build, tmp_path):
    with pytest.raises(EngineSetupError, match="no config.json"):
        build(checkpoint=str(tmp_path / "missing"))
    with pytest.raises(EngineSetupError, match="local file system"):
        build(checkpoint="memory://run/checkpoint")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "attention_bias": True,
        "rope_scaling": {"rope_type": "linear", "factor": 2.0}}))
    (tmp_path / "tokenizer.json").write_text("{}")
    from llm_nanotron import checks, engine

    with pytest.raises(EngineSetupError) as caught:
        config = json.loads((tmp_path / "config.json").read_text())
        from llm_torch import hf

        checks.check_request(engine.NanotronOptions(), hf.config_from_hf(config).to_dict(), config,
                             engine.EngineRequest(checkpoint=str(tmp_path)))
    text = str(caught.value)
    assert "attention_bias = true" in text and "no RoPE scaling" in text


def test_a_value_head_is_refused(build, registries, tokenizer_dir):
    from llm_core.engines import build_train_engine
    from llm_core.specs import EngineSpec, ModelShape

    with pytest.raises(EngineSetupError, match="no value head"):
        build_train_engine(EngineSpec(name="nanotron"), registries, model=ModelShape(**SHAPE),
                           tokenizer=tokenizer_dir, value_head=True)


def test_a_precision_recipe_is_refused_not_ignored(registries, tokenizer_dir, no_spawn):
    """A recipe named in the spec (llm-fp8's, built from the registry) is an error before any process
    starts: applying its nn.Linear swap to nanotron's tensor-parallel linears would be silently wrong."""
    from llm_core.engines import build_train_engine
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

    if "fp8_deepseek" not in registries.precision_recipes.names():
        pytest.skip("llm-fp8 is not installed")
    spec = EngineSpec(name="nanotron", precision_recipe="fp8_deepseek")
    with pytest.raises(EngineSetupError, match=r"engine.precision_recipe \(LayerSwapRecipe\).*engine = \"torch\""):
        build_train_engine(spec, registries, model=ModelShape(**SHAPE), tokenizer=tokenizer_dir,
                           optimizer=OptimizerSpec())
