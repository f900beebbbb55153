"""The recipe's own stages: long documents (each name stated twice, the same value), extend_context
(a checkpoint that transformers and the embedded engine both read as scaled), position_perplexity
(table, plot, short documents counted, malformed records kept); and the recipe validates, its
probes (llm-eval's `long_context_probes`) fed every arm's checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llm_core.config import load_recipe_file, validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner

RECIPE = Path(__file__).parents[3] / "integration" / "recipes" / "long-context.toml"


def run(root, stages, seed=0):
    reset_host()
    host = get_host()
    recipe = validate_recipe({"name": "t", "seed": seed, "executor": {"kind": "local", "workers": 1},
                              "stages": stages}, host.registries, host)
    results = PipelineRunner(recipe, str(root), host).run()
    reset_host()
    return results


def test_the_recipe_validates():
    host = get_host()
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    kinds = [s.kind for s in recipe.stages]
    assert kinds == (["long_documents", "pretrain"] + ["extend_context"] * 3 + ["midtrain"] * 4
                     + ["position_perplexity", "long_context_probes"])
    evaluations = [s for s in recipe.stages if s.kind in ("position_perplexity", "long_context_probes")]
    perplexity, probes = ({k: v for k, v in s.inputs.items() if k != "documents"} for s in evaluations)
    assert probes == perplexity  # the probes (llm-eval) see every arm the perplexity table does


def test_long_documents_state_each_name_twice_with_one_value(tmp_path):
    stage = {"name": "data", "kind": "long_documents", "names": 500, "train_documents": 20,
             "train_statements": [6, 10], "long_documents": 2, "heldout_documents": 3, "long_statements": 100}
    run(tmp_path / "a", [stage])
    again = run(tmp_path / "b", [stage])["data"]
    texts = {}
    for split in ("train", "long_train", "heldout"):
        lines = (tmp_path / "a" / "data" / split / "docs.jsonl").read_text().splitlines()
        assert lines == (tmp_path / "b" / "data" / split / "docs.jsonl").read_text().splitlines()  # seeded
        texts[split] = [json.loads(line)["text"] for line in lines]
    assert again.metrics["heldout_documents"] == 3 and len(texts["long_train"]) == 2
    for text in texts["heldout"] + texts["train"]:
        statements = re.findall(r"(\w+) is (\w+) \.", text)
        values: dict[str, set[str]] = {}
        for name, value in statements:
            values.setdefault(name, set()).add(value)
        assert all(len(v) == 1 for v in values.values())
        counts = [sum(1 for n, _ in statements if n == name) for name in values]
        assert set(counts) == {2}
    assert not set(texts["heldout"]) & set(texts["long_train"])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A freshly initialised plain-RoPE checkpoint (llm-torch) with a BPE tokenizer, at 64 positions."""
    import random

    from llm_longctx.documents import document, pseudo_words
    from llm_torch import hf
    from llm_torch.model import LlamaModel, ModelConfig
    from llm_torch.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("ckpt")
    rng = random.Random(0)
    names = pseudo_words(300, 0)
    tokenizer = train_bpe([document(rng, names, 20, 3) for _ in range(200)], vocab_size=400)
    model = LlamaModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                   num_layers=1, num_heads=2, num_kv_heads=1, max_seq_len=64,
                                   eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id))
    hf.save_checkpoint(str(folder), model, tokenizer, {"peak_lr": 1e-3})
    return folder


def test_extend_context_writes_a_scaling_both_engines_read(tmp_path, tiny_checkpoint):
    transformers = pytest.importorskip("transformers")
    from llm_torch import hf

    stages = [{"name": "yarn", "kind": "extend_context", "inputs": {"checkpoint": str(tiny_checkpoint)},
               "rope": {"name": "yarn", "options": {"factor": 4.0, "original_max_position_embeddings": 64}},
               "max_seq_len": 256},
              {"name": "dyn", "kind": "extend_context", "inputs": {"checkpoint": str(tiny_checkpoint)},
               "rope": {"name": "dynamic", "options": {"factor": 4.0}}, "max_seq_len": 256}]
    run(tmp_path, stages)
    out = tmp_path / "yarn" / "checkpoint"
    config = json.loads((out / "config.json").read_text())
    assert config["rope_parameters"]["rope_type"] == "yarn" and config["max_position_embeddings"] == 256
    assert "rope_scaling" not in config
    assert json.loads((out / "llmt.json").read_text())["context_extension"]["rope"] == "yarn"
    assert (out / "model.safetensors").read_bytes() == (tiny_checkpoint / "model.safetensors").read_bytes()
    theirs = transformers.LlamaForCausalLM.from_pretrained(str(out))
    assert theirs.config.rope_parameters["factor"] == 4.0
    ours, tokenizer = hf.load_checkpoint(str(out))
    assert type(ours.rotary.scaling).rope_type == "yarn" and tokenizer is not None
    dynamic = json.loads((tmp_path / "dyn" / "checkpoint" / "config.json").read_text())
    assert dynamic["max_position_embeddings"] == 64  # where dynamic NTK starts scaling
    with pytest.raises(ValueError, match="already has RoPE scaling 'yarn'"):
        run(tmp_path / "twice", [{"name": "again", "kind": "extend_context", "inputs": {"checkpoint": str(out)},
                                  "rope": {"name": "linear", "options": {"factor": 2.0}}, "max_seq_len": 512}])


def test_position_perplexity_table_plot_and_counts(tmp_path, tiny_checkpoint):
    import random

    from llm_longctx.documents import document, pseudo_words

    rng = random.Random(1)
    names = pseudo_words(300, 0)
    docs = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": document(rng, names, 60, 3)}) for _ in range(3)]
    lines += [json.dumps({"text": "short is red ."}), "{not json", json.dumps({"txt": "no text"})]
    docs.write_text("\n".join(lines) + "\n")
    stage = {"name": "eval", "kind": "position_perplexity",
             "inputs": {"documents": str(docs), "base": str(tiny_checkpoint), "again": str(tiny_checkpoint)},
             "seq_len": 96, "buckets": [0, 32, 64, 96], "trained_length": 64, "batch_size": 2, "window": 16}
    result = run(tmp_path / "run", [stage])["eval"]
    table = (tmp_path / "run" / "eval" / "perplexity.md").read_text().splitlines()
    assert table[0].startswith("| checkpoint | ppl @ 0-32 | ppl @ 32-64 | ppl @ 64-96 |")
    assert [row.split(" | ")[0] for row in table[2:]] == ["| base", "| again"]
    assert result.metrics["base/0-32"] == result.metrics["again/0-32"] > 1
    saved = json.loads((tmp_path / "run" / "eval" / "perplexity.json").read_text())
    assert saved["base"]["documents"] == 3 and saved["base"]["short_documents"] == 1
    assert len(saved["base"]["curve"]) == 6
    assert (tmp_path / "run" / "eval" / "perplexity.png").read_bytes()[:4] == b"\x89PNG"
    rejects = (tmp_path / "run" / "eval" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 2 and all('"line"' in r for r in rejects)
