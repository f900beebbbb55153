"""A pretrain run killed with SIGKILL and re-run gives the uninterrupted run's losses, step for step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

RECIPE = """
name = "resume"
seed = 3
[executor]
kind = "local"
workers = 1
[[stages]]
name = "pretrain"
kind = "pretrain"
inputs = {{ documents = "{docs}" }}
vocab_size = 320
model = {{ hidden_size = 32, intermediate_size = 64, num_layers = 2, num_heads = 4, num_kv_heads = 2 }}
seq_len = 32
batch_size = 8
micro_batch_size = 4
steps = 24
optimizer = {{ lr = 3e-3, warmup_steps = 5, schedule = "wsd" }}
log_every = 1
checkpoint_every = 8
callbacks = ["loss_ema", "throughput"]
threads = 1
"""


def _launch(recipe, root):
    return subprocess.Popen([sys.executable, "-m", "llm_core.cli", "run", str(recipe), "--root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _metrics(root):
    path = root / "pretrain" / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _by_step(records):
    """The last record of every step."""
    return {r["step"]: r for r in records if "loss" in r}


def test_sigkill_then_rerun_reproduces_every_loss(tmp_path, make_texts):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in make_texts(200)))
    recipe = tmp_path / "resume.toml"
    recipe.write_text(RECIPE.format(docs=docs))

    straight = _launch(recipe, tmp_path / "straight")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    killed = _launch(recipe, tmp_path / "killed")
    deadline = time.time() + 300
    while time.time() < deadline and max(_by_step(_metrics(tmp_path / "killed")), default=-1) < 10:
        time.sleep(0.005)
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    seen = max(_by_step(_metrics(tmp_path / "killed")))
    assert 10 <= seen < 23, f"the kill came at step {seen}, not mid-run"
    manifest = json.loads((tmp_path / "killed" / "pretrain" / "manifest.json").read_text())
    assert manifest["status"] == "running"

    resumed = _launch(recipe, tmp_path / "killed")
    assert resumed.wait(timeout=300) == 0
    assert "pretrain: resumed at step" in resumed.stderr.read()

    records = [r for r in _metrics(tmp_path / "killed") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 25)), "every step logged once, also across the kill"
    expected, got = _by_step(_metrics(tmp_path / "straight")), _by_step(records)
    for step in range(1, 25):
        for key in ("loss", "lr", "grad_norm", "loss_ema", "tokens_seen"):
            assert got[step][key] == expected[step][key], (step, key, got[step][key], expected[step][key])
    weights = [(tmp_path / run / "pretrain" / "checkpoint" / "model.safetensors").read_bytes()
               for run in ("straight", "killed")]
    assert weights[0] == weights[1]
    assert not (tmp_path / "killed" / "pretrain" / "resume").exists(), "resume state is pruned once complete"
    summary = json.loads((tmp_path / "killed" / "pretrain" / "manifest.json").read_text())["metrics"]
    assert summary["first_loss"] == expected[1]["loss"], "the first loss is the run's, not the resumed step's"
