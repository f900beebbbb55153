"""pretrain / midtrain through the runner: JSONL or token-folder input, losses from the registry."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from llm_core.artifacts import RunStore
from llm_core.config import validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1}
LR = 3e-3
TRAIN = {"seq_len": 32, "batch_size": 4, "steps": 8, "log_every": 1, "checkpoint_every": 4, "optimizer": {"lr": LR},
         "threads": 1}


@pytest.fixture
def host():
    reset_host()
    yield get_host()
    reset_host()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, make_texts):
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    with open(path, "w") as handle:
        handle.writelines(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate(make_texts(300)))
        handle.write("{not json\n")  # a malformed line: counted and written to rejects, never a crash
    return str(path)


def run(host, root, stages, seed=0):
    recipe = validate_recipe({"name": "t", "seed": seed, "executor": {"kind": "local", "workers": 1},
                              "stages": stages}, host.registries, host)
    return PipelineRunner(recipe, str(root), host).run()


def losses(root, stage):
    return [m["loss"] for m in RunStore(str(root)).read_metrics(stage) if "loss" in m]


def pretrain_stage(documents, **options):
    return {"name": "pretrain", "kind": "pretrain", "inputs": {"documents": documents},
            "vocab_size": 320, "model": TINY, **TRAIN, **options}


def test_pretrain_with_the_plugin_z_loss_from_its_entry_point(host, corpus, tmp_path):
    assert host.registries.losses.get("cross_entropy").plugin == "core"
    z_loss = host.registries.losses.get("z_loss")
    assert z_loss.plugin == "example-loss"  # the third-party plugin's entry point, not llm_torch
    result = run(host, tmp_path, [pretrain_stage(corpus, loss={"name": "z_loss", "options": {"z_coef": 1e-3}})])
    metrics = result["pretrain"].metrics
    assert metrics["steps"] == TRAIN["steps"] and metrics["final_loss"] < metrics["first_loss"]
    rejects = (tmp_path / "pretrain" / "rejects-tokens.jsonl").read_text().splitlines()
    assert len(rejects) == 1 and json.loads(rejects[0])["line"] == 301
    summary = json.loads((tmp_path / "pretrain" / "checkpoint" / "llmt.json").read_text())
    assert summary["loss"] == "z_loss" and summary["peak_lr"] == LR


def test_default_loss_is_cores_cross_entropy_and_loss_falls(host, corpus, tmp_path):
    run(host, tmp_path, [pretrain_stage(corpus, steps=12)])
    curve = losses(tmp_path, "pretrain")
    assert len(curve) == 12 and curve[-1] < curve[0] - 0.5
    meta = json.loads((tmp_path / "pretrain" / "tokens" / "meta.json").read_text())
    assert meta["format"] == "llmt-tokens-v1" and meta["dtype"] == "uint16"


def test_pretrain_reads_a_token_folder(host, tmp_path, tokenizer_dir, make_texts):
    """A folder in the shared llmt-tokens-v1 format, written here with plain numpy as a producer would."""
    from llm_torch.tokenizer import TextTokenizer

    tok = TextTokenizer.load(tokenizer_dir)
    folder = tmp_path / "tokens"
    folder.mkdir()
    shards = []
    for s, texts in enumerate([make_texts(150, seed=1), make_texts(150, seed=2)]):
        ids = np.array([t for text in texts for t in tok.encode(text) + [tok.eos_id]], dtype="<u4")
        ids.tofile(folder / f"tokens-{s:05d}.bin")
        shards.append({"file": f"tokens-{s:05d}.bin", "num_tokens": int(ids.size)})
    (folder / "meta.json").write_text(json.dumps({
        "format": "llmt-tokens-v1", "dtype": "uint32", "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
        "tokenizer": tokenizer_dir, "shards": shards}))
    result = run(host, tmp_path / "run", [pretrain_stage(str(folder))])
    assert result["pretrain"].metrics["final_loss"] < result["pretrain"].metrics["first_loss"]
    assert not (tmp_path / "run" / "pretrain" / "tokens").exists()  # read in place


def test_bad_token_folder_names_the_field(host, tmp_path):
    folder = tmp_path / "tokens"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"format": "llmt-tokens-v1", "dtype": "int8",
                                                  "vocab_size": 10, "eos_id": 0, "shards": []}))
    with pytest.raises(ValueError, match="dtype is 'int8'.*shards must be a non-empty list"):
        run(host, tmp_path / "run", [pretrain_stage(str(folder))])


def test_runs_on_a_memory_filesystem(host, corpus):
    root = f"memory://runs/{uuid.uuid4().hex[:8]}"
    result = run(host, root, [pretrain_stage(corpus, steps=3)])
    assert result["pretrain"].metrics["steps"] == 3
    from llm_torch.hf import load_checkpoint

    model, tokenizer = load_checkpoint(f"{root}/pretrain/checkpoint")
    assert tokenizer.vocab_size == model.config.vocab_size


def test_midtrain_defaults_to_a_tenth_of_the_peak_lr_and_warns_above(host, corpus, tmp_path, make_texts):
    new_docs = tmp_path / "new.jsonl"
    new_docs.write_text("".join(json.dumps({"text": t.upper()}) + "\n" for t in make_texts(100, seed=5)))
    stages = [pretrain_stage(corpus, steps=4),
              {"name": "mid", "kind": "midtrain", "inputs": {"checkpoint": "pretrain/checkpoint",
               "documents": str(new_docs), "replay": corpus}, "replay_ratio": 0.25,
               **TRAIN, "optimizer": {}, "steps": 4}]  # optimizer.lr unset: a tenth of the peak
    run(host, tmp_path / "a", stages)
    mid = RunStore(str(tmp_path / "a")).read_metrics("mid")
    assert mid[0]["lr"] == pytest.approx(LR / 10)
    assert json.loads((tmp_path / "a" / "mid" / "checkpoint" / "llmt.json").read_text())["peak_lr"] == \
        pytest.approx(LR / 10)
    stages[1]["optimizer"] = {"lr": LR}
    with pytest.warns(UserWarning, match="above a tenth of the previous peak"):
        run(host, tmp_path / "b", stages)


def test_replay_mix_draws_the_requested_share():
    from llm_torch.data import ReplayMix

    class Source:
        def __init__(self, tag):
            self.tag = tag

        def block(self, index):
            return (self.tag, index)

    mix = ReplayMix(Source("new"), Source("old"), 0.3, seed=0)
    drawn = [mix.block(i) for i in range(2000)]
    old = [i for tag, i in drawn if tag == "old"]
    new = [i for tag, i in drawn if tag == "new"]
    assert 0.26 < len(old) / 2000 < 0.34
    assert old == list(range(len(old))) and new == list(range(len(new)))  # each source in order, no repeats


def test_an_input_with_every_record_rejected_is_one_clear_error_and_keeps_its_rejects(host, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"txt": "wrong field"}\n[1, 2]\n{broken\n')
    with pytest.raises(ValueError, match=r"has no usable text \(3 malformed records kept in .*rejects-tokens.jsonl"):
        run(host, tmp_path / "run", [pretrain_stage(str(bad), tokenizer_docs=10)])
    rejects = (tmp_path / "run" / "pretrain" / "rejects-tokens.jsonl").read_text().splitlines()
    assert [json.loads(r)["line"] for r in rejects] == [1, 2, 3]
