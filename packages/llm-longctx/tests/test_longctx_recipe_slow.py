"""The long-context recipe end to end at a tiny size (every stage, every arm): each extension keeps
its scaling through continued training, the perplexity evaluation writes its table and plot, and
llm-eval's long-context probes (reached through the recipe, never imported) answer for every arm at
the trained length and past it. A few minutes on 2 cores: marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.config import apply_overrides, load_recipe_file, validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner

RECIPE = Path(__file__).parents[3] / "integration" / "recipes" / "long-context.toml"
PROBE_TASKS = ["niah_single", "variable_tracking", "babilong_qa2"]  # a needle, multi-hop, facts in noise
ARMS = ["base", "pi", "ntk", "yarn", "plain_mid", "pi_mid", "ntk_mid", "yarn_mid"]


@pytest.mark.slow
def test_recipe_runs_every_arm_at_a_tiny_size(tmp_path):
    overrides = ["stages.data.train_documents=200", "stages.data.long_documents=6", "stages.data.heldout_documents=2",
                 "stages.pretrain.steps=3", "stages.pretrain.batch_size=2", "stages.eval.batch_size=2",
                 "stages.probes.lengths=[256, 2000]", "stages.probes.depths=[0.5]", "stages.probes.samples=1",
                 "stages.probes.max_new_tokens=16", f"stages.probes.tasks={json.dumps(PROBE_TASKS)}"]
    for arm in ("plain_mid", "pi_mid", "ntk_mid", "yarn_mid"):
        overrides += [f"stages.{arm}.steps=1", f"stages.{arm}.batch_size=1"]
    reset_host()
    host = get_host()
    data = apply_overrides(load_recipe_file(RECIPE), overrides)
    results = PipelineRunner(validate_recipe(data, host.registries, host), str(tmp_path), host).run()
    reset_host()
    for arm, kind in (("pi_mid", "linear"), ("yarn_mid", "yarn"), ("ntk_mid", "default"), ("plain_mid", "default")):
        config = json.loads((tmp_path / arm / "checkpoint" / "config.json").read_text())
        assert config["rope_parameters"]["rope_type"] == kind and config["max_position_embeddings"] == 2048
    table = (tmp_path / "eval" / "perplexity.md").read_text().splitlines()
    assert [row.split(" | ")[0].lstrip("| ") for row in table[2:]] == ARMS
    assert (tmp_path / "eval" / "perplexity.png").exists()
    assert set(results["eval"].metrics) == {f"{arm}/{b}" for arm in ARMS
                                            for b in ("0-256", "256-512", "512-1024", "1024-2048")}
    probes = (tmp_path / "probes" / "table.md").read_text()
    assert [line.split(" | ")[0].lstrip("| ") for line in probes.splitlines() if line.startswith("| ")][1:] == [
        arm for arm in ARMS for _ in (256, 2000)]  # a row per arm and length, after the header
    assert "variable_tracking (multi-hop)" in probes and "niah_single (single needle)" in probes
    for arm in ARMS:
        items = (tmp_path / "probes" / arm / "items.jsonl").read_text().splitlines()
        assert len(items) == 3 * 2  # 3 tasks x 2 lengths x 1 depth x 1 sample
        assert (tmp_path / "probes" / arm / "needle_heatmap.png").exists()
    assert {key.rsplit("/", 1)[1] for key in results["probes"].metrics} == set(ARMS)
