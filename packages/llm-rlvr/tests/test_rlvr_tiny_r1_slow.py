"""The main job end to end (slow: about 6 minutes): ``tiny-r1`` from nothing, judged on its criteria."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

RECIPE = Path(__file__).parents[3] / "integration" / "recipes" / "tiny-r1.toml"


@pytest.fixture(scope="module")
def tiny_r1(tmp_path_factory):
    from llm_core.config import load_recipe_file, validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    root = tmp_path_factory.mktemp("tiny-r1")
    host = get_host()
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    start = time.monotonic()
    PipelineRunner(recipe, str(root), host).run()
    return root, (time.monotonic() - start) / 60


@pytest.mark.slow
def test_tiny_r1_runs_within_budget_and_reports(tiny_r1):
    root, minutes = tiny_r1
    results = json.loads((root / "eval/results.json").read_text())
    assert [r["name"] for r in results["rows"]] == ["cold_start", "grpo", "rs_sft", "final_rl"]
    assert all(r["n"] >= 500 for r in results["rows"])
    assert (root / "eval/curves.png").read_bytes().startswith(b"\x89PNG")
    assert minutes < 10, f"took {minutes:.1f} minutes"


@pytest.mark.slow
def test_tiny_r1_gates_its_training_data_and_reports(tiny_r1):
    root, _ = tiny_r1
    for stage in ("cold_start", "grpo", "rs", "rs_sft", "final_rl"):
        gate = json.loads((root / stage / "decontamination.json").read_text())
        assert gate["filter"] == "contamination" and gate["checked"] > 0
    curves = json.loads((root / "ttc/ttc.json").read_text())["curves"]
    assert set(curves) == {"cold_start", "final_rl"} and [p["n"] for p in curves["final_rl"]][-1] == 64
    page = (root / "report/report.html").read_text()
    assert "Test-time compute" in page and "decontaminate" in page


@pytest.mark.slow
def test_tiny_r1_evaluation_costs_at_most_a_tenth(tiny_r1):
    """The gate, test-time compute and the report add at most 10% to the rest of the run."""
    root, _ = tiny_r1
    wall = {p.parent.name: json.loads(p.read_text())["wall_time_s"] for p in root.glob("*/manifest.json")}
    gate = sum(json.loads(p.read_text())["seconds"] for p in root.glob("*/decontamination.json"))
    added = wall["ttc"] + wall["report"] + gate
    rest = sum(wall.values()) - wall["ttc"] - wall["report"] - gate
    assert added <= 0.10 * rest, f"gate {gate:.0f} s, ttc {wall['ttc']:.0f} s, report {wall['report']:.0f} s " \
                                 f"against {rest:.0f} s for the rest"


@pytest.mark.slow
def test_tiny_r1_grpo_beats_cold_start(tiny_r1):
    root, _ = tiny_r1
    results = json.loads((root / "eval/results.json").read_text())
    for metric in ("greedy", "sampled"):
        grpo = next(c for c in results["comparisons"] if c["candidate"] == "grpo" and c["metric"] == metric)
        assert grpo["beyond_intervals"] and grpo["delta"] > 0, results
