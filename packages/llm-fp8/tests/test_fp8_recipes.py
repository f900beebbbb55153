"""Precision recipes through the engine contract (the embedded torch engine), and the stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_core.config import load_recipe_file, validate_recipe
from llm_core.engines import build_train_engine
from llm_core.errors import RecipeError
from llm_core.plugins import get_host, get_registries, reset_host
from llm_core.refs import PrecisionRef
from llm_core.runner import PipelineRunner
from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

RECIPE = Path(__file__).parents[3] / "integration" / "recipes" / "low-precision.toml"
SHAPE = ModelShape(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2)
WORDS = "the river city school music water energy market language science valley garden".split()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from llm_torch.tokenizer import train_bpe

    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(200)]
    folder = tmp_path_factory.mktemp("tokenizer")
    train_bpe(texts, vocab_size=300).save(str(folder))
    return str(folder)


def engine(tokenizer_dir, recipe=None, **options):
    spec = EngineSpec(precision_recipe=PrecisionRef(name=recipe, options=options) if recipe else None)
    return build_train_engine(spec, get_registries(), model=SHAPE, tokenizer=tokenizer_dir,
                              optimizer=OptimizerSpec(lr=1e-2, schedule="constant"), total_steps=10, seed=0)


BATCH = {"input_ids": torch.randint(3, 300, (4, 33), generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize("recipe", ["fp8_deepseek", "fp8_tensorwise", "mxfp8", "mx_weights", "qat"])
def test_recipe_converts_the_selected_layers_and_keeps_every_parameter(tokenizer_dir, recipe):
    plain, converted = engine(tokenizer_dir), engine(tokenizer_dir, recipe)
    kinds = {type(m).__name__ for name, m in converted.model.named_modules() if name.endswith("_proj")}
    assert kinds == {{"fp8_deepseek": "Fp8Linear", "fp8_tensorwise": "Fp8Linear", "mxfp8": "MxLinear",
                      "mx_weights": "MxWeightLinear", "qat": "FakeQuantLinear"}[recipe]}
    assert type(converted.model.lm_head).__name__ == "Linear"  # the output head stays in the engine's precision
    assert converted.model.lm_head.weight is converted.model.model.embed_tokens.weight  # ties kept
    before = plain.model.state_dict()
    after = converted.model.state_dict()
    assert list(before) == list(after) and all(torch.equal(before[k], after[k]) for k in before)
    loss = get_registries().losses.build("cross_entropy")
    losses = [converted.train_step(BATCH, loss)["loss"] for _ in range(6)]
    assert losses[-1] < losses[0] - 0.5
    low_precision = converted.logprobs(BATCH)
    assert torch.isfinite(low_precision).all()


def test_fp8_training_follows_fp32_closely(tokenizer_dir):
    loss = get_registries().losses.build("cross_entropy")
    reference, fp8 = engine(tokenizer_dir), engine(tokenizer_dir, "fp8_deepseek")
    for _ in range(4):
        a, b = reference.train_step(BATCH, loss)["loss"], fp8.train_step(BATCH, loss)["loss"]
    assert abs(a - b) / a < 0.02


def test_module_filter_and_bad_options_are_reported_with_their_path(tokenizer_dir):
    only_mlp = engine(tokenizer_dir, "fp8_deepseek", modules={"include": ["*.mlp.*"]})
    converted = [n for n, m in only_mlp.model.named_modules() if type(m).__name__ == "Fp8Linear"]
    assert converted == [f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("gate_proj", "up_proj", "down_proj")]
    host = get_host()
    data = {"name": "bad", "stages": [{"name": "p", "kind": "pretrain", "inputs": {"documents": tokenizer_dir},
                                        "engine": {"precision_recipe": {"name": "fp8_deepseek",
                                                                        "options": {"scaling": "delayed"}}}},
                                       {"name": "q", "kind": "pretrain", "inputs": {"documents": tokenizer_dir},
                                        "engine": {"precision_recipe": "fp8_deepsek"}}]}
    with pytest.raises(RecipeError) as info:
        validate_recipe(data, host.registries, host)
    message = str(info.value)
    assert "stages.p.engine.precision_recipe.options" in message and "delayed scaling" in message
    assert "did you mean 'fp8_deepseek'" in message


def test_low_precision_recipe_validates():
    reset_host()
    host = get_host()
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    kinds = [s.kind for s in recipe.stages]
    assert kinds.count("pretrain") == 7 and "precision_report" in kinds and kinds.count("quantize_weights") == 2


def test_stages_quantize_a_checkpoint_and_report_precisions(tmp_path):
    reset_host()
    host = get_host()
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2}
    common = {"kind": "pretrain", "model": shape, "seq_len": 32, "batch_size": 4, "steps": 4, "log_every": 1,
              "vocab_size": 300, "threads": 1, "curves": False}
    data = {"name": "lp", "seed": 0, "stages": [
        {"name": "text", "kind": "synthetic_text", "num_docs": 200},
        {"name": "fp32", "inputs": {"documents": "text/documents"}, **common},
        {"name": "fp8", "inputs": {"documents": "text/documents"}, **common,
         "engine": {"precision_recipe": "fp8_deepseek"}},
        {"name": "report", "kind": "precision_report", "inputs": {"fp32": "fp32", "fp8": "fp8"}, "final_window": 2},
        {"name": "int4", "kind": "quantize_weights", "inputs": {"checkpoint": "fp32/checkpoint"},
         "weights": {"bits": 4, "group_size": 32}},
    ]}
    recipe = validate_recipe(data, host.registries, host)
    results = PipelineRunner(recipe, str(tmp_path), host).run()
    report = results["report"].metrics
    assert report["gap_pct/fp32"] == 0.0 and abs(report["gap_pct/fp8"]) < 2.0
    rows = json.loads((tmp_path / "report" / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["fp32", "fp8"] and (tmp_path / "report" / "curves.png").exists()
    int4 = results["int4"].metrics
    assert int4["quantized_tensors"] == 7 and int4["bits_per_weight"] == 5.0 and 0 < int4["relative_error"] < 0.2
    from llm_fp8.qat import fake_quantize_int, load_quantized
    from llm_torch.hf import load_checkpoint

    original = load_checkpoint(str(tmp_path / "fp32" / "checkpoint"))[0].state_dict()
    written = load_checkpoint(str(tmp_path / "int4" / "checkpoint"))[0].state_dict()
    exported = load_quantized(str(tmp_path / "int4" / "quantized.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(written[name], fake_quantize_int(original[name], 4, 32))
    assert torch.equal(exported[name], written[name])
    assert torch.equal(written["model.embed_tokens.weight"], original["model.embed_tokens.weight"])
    reset_host()
