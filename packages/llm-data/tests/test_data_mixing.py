"""Mixtures and curricula: pure functions, then the mix stage on a small two-domain corpus."""

from __future__ import annotations

import gzip
import json

import pytest

from llm_core.config import validate_recipe
from llm_core.plugins import get_host
from llm_core.runner import PipelineRunner
from llm_data.mixing import (
    Phase,
    mixture_at,
    normalize,
    phase_budgets,
    temperature_weights,
    with_replay,
    wsd_curriculum,
    wsd_lr_multiplier,
)


def test_normalize_and_errors():
    assert normalize({"a": 1, "b": 3}) == {"a": 0.25, "b": 0.75}
    with pytest.raises(ValueError, match=">= 0"):
        normalize({"a": -1, "b": 2})
    with pytest.raises(ValueError, match="zero"):
        normalize({"a": 0})


def test_temperature_weights():
    sizes = {"big": 900, "small": 100}
    assert temperature_weights(sizes, 1.0) == pytest.approx({"big": 0.9, "small": 0.1})
    flat = temperature_weights(sizes, 1e6)
    assert flat["big"] == pytest.approx(0.5, abs=1e-3)
    t2 = temperature_weights(sizes, 2.0)  # sqrt: 30 vs 10
    assert t2 == pytest.approx({"big": 0.75, "small": 0.25})


def test_replay():
    mixed = with_replay({"new": 1.0}, {"web": 0.5, "code": 0.5}, 0.2)
    assert mixed == pytest.approx({"new": 0.8, "web": 0.1, "code": 0.1})


def test_wsd_curriculum_aligns_anneal_with_decay():
    phases = wsd_curriculum(1000, 0.2, {"web": 0.9, "math": 0.1}, {"web": 0.5, "math": 0.5})
    assert [p.until_tokens for p in phases] == [800, 1000]
    assert mixture_at(phases, 799)["math"] == pytest.approx(0.1)
    assert mixture_at(phases, 800)["math"] == pytest.approx(0.5)
    # the anneal begins exactly where the learning rate starts to decay
    assert wsd_lr_multiplier(799, 1000, 0.01, 0.2) == 1.0
    assert wsd_lr_multiplier(900, 1000, 0.01, 0.2) == pytest.approx(0.5)
    assert wsd_lr_multiplier(5, 1000, 0.01, 0.2) == pytest.approx(0.5)
    assert phase_budgets(phases) == [{"web": 720, "math": 80}, {"web": 100, "math": 100}]
    with pytest.raises(ValueError, match="increasing"):
        phase_budgets([Phase(10, {"a": 1.0}), Phase(5, {"a": 1.0})])


def _corpus(folder, n_per_domain=200):
    folder.mkdir()
    for shard in range(2):
        with gzip.open(folder / f"part-{shard}.jsonl.gz", "wt") as f:
            for i in range(n_per_domain // 2):
                for domain in ("web", "math"):
                    f.write(json.dumps({"id": f"{domain}-{shard}-{i}", "text": "x" * 400,
                                        "source": domain}) + "\n")


def _run_mix(tmp_path, **options):
    _corpus(tmp_path / "docs")
    data = {"name": "m", "seed": 3, "executor": {"kind": "local", "workers": 1}, "stages": [
        {"name": "mix", "kind": "mix", "inputs": {"documents": str(tmp_path / "docs")}, **options}]}
    host = get_host()
    PipelineRunner(validate_recipe(data, host.registries, host), str(tmp_path / "run"), host).run()
    return json.loads((tmp_path / "run" / "mix" / "mixture.json").read_text())


def test_mix_stage_static_weights_with_anneal(tmp_path):
    # 200 docs of 100 tokens per domain: 20,000 tokens each
    report = _run_mix(tmp_path, weights={"web": 0.8, "math": 0.2}, total_tokens=30000,
                      anneal_weights={"web": 0.4, "math": 0.6}, decay_fraction=0.2)
    assert report["domain_tokens"] == {"web": 20000, "math": 20000}
    stable, anneal = report["phases"]
    assert stable["budget"] == {"web": 19200, "math": 4800} and anneal["budget"] == {"web": 2400, "math": 3600}
    for phase, written in zip(report["phases"], report["written"], strict=True):
        for domain, budget in phase["budget"].items():
            assert written[domain] == pytest.approx(budget, rel=0.15)  # sampled: exact in expectation
    lines = [json.loads(x) for f in (tmp_path / "run" / "mix" / "mixture" / "phase-1").glob("*.jsonl.gz")
             for x in gzip.decompress(f.read_bytes()).decode().splitlines()]
    assert sum(x["metadata"]["source"] == "math" for x in lines) == report["written"][1]["math"] // 100


def test_mix_stage_temperature_and_upsampling(tmp_path):
    report = _run_mix(tmp_path, method="temperature", temperature=2.0, total_tokens=80000, max_epochs=None)
    assert report["phases"][0]["weights"] == pytest.approx({"web": 0.5, "math": 0.5})
    assert report["phases"][0]["epochs"] == {"web": 2.0, "math": 2.0}  # repeated to reach the budget
    assert sum(report["written"][0].values()) == pytest.approx(80000, rel=0.1)


def test_mix_stage_unknown_domain_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="code.*no documents"):
        _run_mix(tmp_path, weights={"web": 0.5, "code": 0.5})


def test_cap_epochs_moves_weight_from_small_domains():
    from llm_data.mixing import cap_epochs

    weights = cap_epochs({"big": 0.5, "tiny": 0.5}, {"big": 1000, "tiny": 10}, total=1000, max_epochs=4)
    assert weights == pytest.approx({"tiny": 0.04, "big": 0.96})
    assert cap_epochs({"a": 0.5, "b": 0.5}, {"a": 1000, "b": 1000}, 1000, 4) == pytest.approx({"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="epochs"):
        cap_epochs({"a": 1.0}, {"a": 10}, 1000, 4)


def test_mix_stage_caps_epochs(tmp_path):
    report = _run_mix(tmp_path, weights={"web": 0.9, "math": 0.1}, total_tokens=60000, max_epochs=2.0)
    # web would need 54,000 of its 20,000 tokens: capped at 2 epochs, math takes the rest
    assert report["phases"][0]["weights"] == pytest.approx({"web": 2 / 3, "math": 1 / 3})
