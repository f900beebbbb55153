"""SFT: pinned chat templates, assistant-only loss, prefix property, bad data to rejects."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llm_core.artifacts import RunStore
from llm_core.chat import encode_conversation
from llm_core.config import validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner
from llm_core.types import Message
from llm_torch.tokenizer import TextTokenizer

CONVERSATIONS = [
    [Message("user", "What is 2 + 3?"), Message("assistant", "2 + 3 = 5.")],
    [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello."),
     Message("user", "Repeat after me: river"), Message("assistant", "river")],
    [Message("user", "a"), Message("assistant", "b"), Message("assistant", "c")],
]


@pytest.fixture(params=["chatml", "llama3"])
def tokenizer(request, tokenizer_dir):
    return TextTokenizer.load(tokenizer_dir).with_chat_template(request.param)


def test_every_turns_prompt_is_a_prefix_of_the_conversation(tokenizer):
    for messages in CONVERSATIONS:
        full_text = tokenizer.apply_chat_template(messages)
        full_ids, _ = encode_conversation(tokenizer, messages)
        for i, message in enumerate(messages):
            if message.role != "assistant":
                continue
            prompt = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
            assert full_text.startswith(prompt)
            prompt_ids = tokenizer.encode(prompt)  # what inference feeds the model, tokenized at once
            assert full_ids[:len(prompt_ids)] == prompt_ids


def test_loss_mask_covers_exactly_the_assistant_turns_and_their_end_token(tokenizer):
    messages = CONVERSATIONS[1]
    ids, mask = encode_conversation(tokenizer, messages)
    assert len(ids) == len(mask)
    trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m], skip_special_tokens=False)
    end = "<|im_end|>" if tokenizer.template_name == "chatml" else "<|eot_id|>"
    assert trained.replace("\n", "") == f"Hello.{end}river{end}"
    untrained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m], skip_special_tokens=False)
    assert "Be brief." in untrained and "Repeat after me: river" in untrained and "Hello." not in untrained


def test_templates_render_as_pinned(tokenizer_dir):
    tok = TextTokenizer.load(tokenizer_dir)
    msgs = [{"role": "user", "content": "hi"}]
    assert tok.with_chat_template("chatml").apply_chat_template(msgs, add_generation_prompt=True) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.with_chat_template("llama3").apply_chat_template(msgs, add_generation_prompt=True) == \
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>" \
        "<|start_header_id|>assistant<|end_header_id|>\n\n"


@pytest.fixture
def host():
    reset_host()
    yield get_host()
    reset_host()


def _write_chat(path, good=40):
    lines = []
    for i in range(good):
        lines.append(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + 1?"},
                                              {"role": "assistant", "content": f"{i} + 1 = {i + 1}."}]}))
    lines.insert(3, json.dumps({"messages": [{"role": "user", "content": "no answer"}]}))
    lines.insert(7, json.dumps({"messages": [{"role": "robot", "content": "x"},
                                             {"role": "assistant", "content": "y"}]}))
    lines.insert(9, json.dumps({"messages": [{"role": "user", "content": "long " * 200},
                                             {"role": "assistant", "content": "ok"}]}))
    lines.insert(11, '{"messages": [')
    path.write_text("\n".join(lines) + "\n")


def _recipe(host, tmp_path, chat, tokenizer_dir, template="llama3", steps=6):
    """A recipe with one sft stage over ``chat``, on a fresh tiny base checkpoint."""
    from llm_torch.hf import save_checkpoint
    from llm_torch.model import LlamaModel, ModelConfig

    tok = TextTokenizer.load(tokenizer_dir)
    model = LlamaModel(ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                   num_layers=1, num_heads=2, num_kv_heads=1))
    save_checkpoint(str(tmp_path / "base"), model, tok, {"peak_lr": 1e-3})
    return validate_recipe({"name": "sft", "executor": {"kind": "local", "workers": 1}, "stages": [
        {"name": "sft", "kind": "sft", "inputs": {"checkpoint": str(tmp_path / "base"), "conversations": str(chat)},
         "chat_template": template, "seq_len": 64, "batch_size": 4, "steps": steps, "optimizer": {"lr": 3e-3},
         "log_every": 1, "threads": 1}]}, host.registries, host)


def test_sft_stage_rejects_bad_records_with_file_and_line_and_pins_the_template(host, tmp_path, tokenizer_dir):
    chat = tmp_path / "chat.jsonl"
    _write_chat(chat)
    recipe = _recipe(host, tmp_path, chat, tokenizer_dir)
    result = PipelineRunner(recipe, str(tmp_path / "run"), host).run()["sft"]
    assert result.metrics["final_loss"] < result.metrics["first_loss"]
    rejects = [json.loads(line) for line in (tmp_path / "run" / "sft" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in rejects] == [(4, str(chat)), (8, str(chat)), (10, str(chat)),
                                                          (12, str(chat))]
    errors = " | ".join(r["error"] for r in rejects)
    assert "no assistant turn" in errors and "'robot'" in errors and "more than seq_len" in errors
    first = RunStore(str(tmp_path / "run")).read_metrics("sft")[0]
    assert (first["conversations"], first["rejected"]) == (44, 4)
    out = TextTokenizer.load(str(tmp_path / "run" / "sft" / "checkpoint"))
    assert out.template_name == "llama3" and out.stop_ids()[0] == out.token_id("<|eot_id|>")


def test_sft_fails_up_front_when_most_records_are_bad(host, tmp_path, tokenizer_dir):
    chat = tmp_path / "chat.jsonl"
    _write_chat(chat, good=2)
    recipe = _recipe(host, tmp_path, chat, tokenizer_dir)
    with pytest.raises(ValueError, match=r"4 of 6 conversations are malformed.*chat.jsonl:3: ValueError: the "
                                         "conversation has no"):
        PipelineRunner(recipe, str(tmp_path / "run"), host).run()


def test_describe_stage_sft_prints_the_schema():
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run([sys.executable, "-m", "llm_core.cli", "describe", "stage", "sft"],
                         capture_output=True, text=True, check=True, env=env).stdout
    assert "chat_template" in out and "max_rejects_fraction" in out and "seq_len" in out
