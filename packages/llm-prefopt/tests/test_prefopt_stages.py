"""The preference stages on a toy model, through the registries exactly as a recipe runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("llm_torch")

FAST = {"threads": 1, "curves": False, "max_length": 64}


def dpo_stage(name="dpo", loss="dpo", steps=4, **extra):
    return {"name": name, "kind": "dpo", "inputs": {"checkpoint": extra.pop("checkpoint"), "pairs": extra.pop("pairs"),
                                                     **extra.pop("inputs", {})},
            "loss": loss, "batch_size": 4, "steps": steps, "optimizer": {"lr": 3e-3}, **FAST, **extra}


def metrics(root: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (root / stage / "metrics.jsonl").read_text().splitlines()]


def test_dpo_learns_the_preference_and_caches_the_reference(tiny_checkpoint, pair_files, tmp_path, stages_runner):
    # held out = the training pairs: a ~50k-parameter random model learns these, it cannot generalize
    stage = dpo_stage(checkpoint=tiny_checkpoint, pairs=pair_files["train"], steps=8, eval_every=4,
                      loss={"name": "dpo", "options": {"beta": 0.5}}, optimizer={"lr": 1e-2},
                      inputs={"heldout": pair_files["train"]})
    stages_runner([stage], str(tmp_path))
    records = metrics(tmp_path, "dpo")
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 8
    assert {"rewards/margins", "rewards/accuracies", "logps/chosen", "mode_collapse"} <= set(steps[0])
    evals = [r for r in records if "eval/rewards/margins" in r]
    assert [r["step"] for r in evals] == [0, 4, 8]
    assert evals[0]["eval/rewards/margins"] == pytest.approx(0.0, abs=1e-5)  # the policy is the reference
    assert evals[-1]["eval/rewards/margins"] > 0.02 and evals[-1]["eval/rewards/accuracies"] > 0.5
    cache = list((tmp_path / "reference_logps").glob("*.json"))
    assert len(cache) == 1  # the same rows: one key
    assert (tmp_path / "dpo/checkpoint/model.safetensors").exists()


def test_every_pairwise_loss_trains_and_shares_the_cache(tiny_checkpoint, pair_files, tmp_path, stages_runner):
    names = ["dpo", "ipo", "hinge", "robust", "simpo", "orpo"]
    stages = [dpo_stage(name=n, loss={"name": n, "options": {"sft_weight": 0.1}} if n == "dpo" else n, steps=2,
                        checkpoint=tiny_checkpoint, pairs=pair_files["train"]) for n in names]
    result = stages_runner(stages, str(tmp_path))
    assert len(list((tmp_path / "reference_logps").glob("*.json"))) == 1  # computed by the first, read by the rest
    for n in names:
        last = metrics(tmp_path, n)[-1]
        assert last["step"] == 2 and "rewards/accuracies" in last, n
    assert "sft_loss" in metrics(tmp_path, "dpo")[-1] and "nll_loss" in metrics(tmp_path, "orpo")[-1]
    assert result["dpo"].metrics["steps"] == 2


def test_live_reference_gives_the_cached_result(tiny_checkpoint, pair_files, tmp_path, stages_runner):
    cached = dpo_stage(name="cached", steps=3, checkpoint=tiny_checkpoint, pairs=pair_files["train"])
    live = dpo_stage(name="live", steps=3, reference="live", checkpoint=tiny_checkpoint, pairs=pair_files["train"])
    stages_runner([cached, live], str(tmp_path))
    a, b = metrics(tmp_path, "cached")[-1], metrics(tmp_path, "live")[-1]
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def _same_weights(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] == wb[key]).all(), key


def _dies_at(module, step_to_die: int, monkeypatch):
    original = module.step_indices

    def dies(count, seed, step, size):
        if step == step_to_die:
            raise KeyboardInterrupt("killed")
        return original(count, seed, step, size)

    monkeypatch.setattr(module, "step_indices", dies)
    return original


def test_killed_dpo_run_resumes_to_the_same_weights(tiny_checkpoint, pair_files, tmp_path, monkeypatch, stages_runner):
    from llm_prefopt import dpo_stage as module

    stage = dpo_stage(steps=5, checkpoint_every=2, checkpoint=tiny_checkpoint, pairs=pair_files["train"])
    stages_runner([stage], str(tmp_path / "whole"))
    original = _dies_at(module, 3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        stages_runner([stage], str(tmp_path / "broken"))
    assert (tmp_path / "broken/dpo/resume/latest.json").exists()
    monkeypatch.setattr(module, "step_indices", original)
    stages_runner([stage], str(tmp_path / "broken"))
    _same_weights(tmp_path / "whole/dpo/checkpoint", tmp_path / "broken/dpo/checkpoint")
    assert [r["step"] for r in metrics(tmp_path / "broken", "dpo") if "loss" in r] == [1, 2, 3, 4, 5]


def test_kto_trains_on_pairs_split_in_two(tiny_checkpoint, pair_files, tmp_path, stages_runner):
    stage = {"name": "kto", "kind": "kto", "inputs": {"checkpoint": tiny_checkpoint, "examples": pair_files["train"]},
             "batch_size": 8, "steps": 3, "optimizer": {"lr": 3e-3}, **FAST}
    stages_runner([stage], str(tmp_path))
    last = metrics(tmp_path, "kto")[-1]
    assert {"kl", "rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(last)
    first = metrics(tmp_path, "kto")[0]
    assert first["examples"] == 80 and first["desirable"] == 40


def test_malformed_pairs_are_counted_and_kept_with_file_and_line(tiny_checkpoint, pair_files, tmp_path, stages_runner,
                                                                 jsonl_writer):
    good = [json.loads(line) for line in Path(pair_files["train"]).read_text().splitlines()]
    bad = [{"prompt": "x", "chosen": "same", "rejected": "same"}, {"prompt": "x", "chosen": "a"},
           {"prompt": "x", "chosen": " ", "rejected": "b"}]
    path = tmp_path / "mixed.jsonl"
    jsonl_writer(path, good[:10] + bad)
    with path.open("a") as handle:
        handle.write("{not json\n")
    stages_runner([{"name": "pairs", "kind": "preference_pairs", "inputs": {"pairs": str(path)}},
                dpo_stage(steps=1, checkpoint=tiny_checkpoint, pairs=str(path))], str(tmp_path / "run"))
    for stage in ("pairs", "dpo"):
        rejects = [json.loads(line) for line in (tmp_path / "run" / stage / "rejects.jsonl").read_text().splitlines()]
        assert sorted(r["line"] for r in rejects) == [11, 12, 13, 14], stage
        reasons = " ".join(r["error"] for r in rejects)
        assert "identical" in reasons and "missing field 'rejected'" in reasons and "empty" in reasons


def test_reward_model_learns_and_scores_as_a_verifier_for_grpo_and_rejection_sampling(
        tiny_checkpoint, pair_files, tmp_path, stages_runner):
    pytest.importorskip("llm_rlvr")
    rm = {"name": "rm", "kind": "reward_model", "inputs": {"checkpoint": tiny_checkpoint,
                                                            "pairs": pair_files["train"],
                                                            "heldout": pair_files["train"]},
          "batch_size": 8, "steps": 12, "optimizer": {"lr": 3e-3}, **FAST}
    verifier = {"name": "reward_model", "workers": 0, "options": {"checkpoint": "RM"}}
    stages_runner([rm], str(tmp_path))
    report = json.loads((tmp_path / "rm/report.json").read_text())
    assert report["heldout_accuracy"] > report["heldout_accuracy_before"] and report["heldout_accuracy"] >= 0.75
    verifier["options"]["checkpoint"] = str(tmp_path / "rm/checkpoint")
    grpo = {"name": "grpo", "kind": "grpo", "inputs": {"checkpoint": tiny_checkpoint,
                                                        "problems": pair_files["problems"]},
            "verifier": verifier, "group_size": 2, "prompts_per_step": 2, "steps": 1, "sampling": {"max_new_tokens": 6},
            "threads": 1, "curves": False}
    rs = {"name": "rs", "kind": "rejection_sampling", "inputs": {"checkpoint": tiny_checkpoint,
                                                                  "problems": pair_files["problems"]},
          "verifier": {**verifier, "options": {**verifier["options"], "pass_threshold": -1e9}},
          "samples_per_prompt": 2, "max_prompts": 3, "sampling": {"max_new_tokens": 6}, "threads": 1}
    stages_runner([rm, grpo, rs], str(tmp_path))
    assert "reward_mean" in metrics(tmp_path, "grpo")[-1]
    assert json.loads((tmp_path / "rs/report.json").read_text())["kept"] >= 3


def ppo_stage(reward_model: str, problems: str, checkpoint: str, **extra):
    return {"name": "ppo", "kind": "ppo", "inputs": {"checkpoint": checkpoint, "problems": problems,
                                                      "reward_model": reward_model},
            "prompts_per_step": 3, "samples_per_prompt": 2, "ppo_epochs": 2, "mini_batches": 2,
            "sampling": {"max_new_tokens": 8}, "optimizer": {"lr": 1e-3}, "threads": 1, "curves": False, **extra}


@pytest.fixture(scope="module")
def reward_run(tiny_checkpoint, pair_files, tmp_path_factory, stages_runner) -> Path:
    root = tmp_path_factory.mktemp("rm")
    stages_runner([{"name": "rm", "kind": "reward_model", "inputs": {"checkpoint": tiny_checkpoint,
                                                                   "pairs": pair_files["train"]},
                 "batch_size": 8, "steps": 4, "optimizer": {"lr": 3e-3}, **FAST}], str(root))
    return root / "rm/checkpoint"


def test_ppo_trains_with_adaptive_kl_and_early_stop(tiny_checkpoint, pair_files, reward_run, tmp_path, stages_runner):
    stage = ppo_stage(str(reward_run), pair_files["problems"], tiny_checkpoint, steps=3, target_kl=1e-6,
                      kl={"kind": "adaptive", "kl_coef": 0.1, "target": 0.01, "horizon": 60})
    stages_runner([stage], str(tmp_path))
    records = [r for r in metrics(tmp_path, "ppo") if "loss" in r]
    assert {"reward_mean", "kl", "kl_coef", "pg_loss", "vf_loss", "approx_kl", "optimizer_steps"} <= set(records[0])
    assert all(r["optimizer_steps"] < 4 for r in records[1:])  # a tiny target_kl stops each step early
    coefs = [r["kl_coef"] for r in records]
    assert coefs[0] == 0.1 and coefs[1] != coefs[0]  # adapted after the first step


def test_killed_ppo_run_resumes_to_the_same_weights(tiny_checkpoint, pair_files, reward_run, tmp_path, monkeypatch,
                                                    stages_runner):
    from llm_prefopt import ppo_stage as module

    stage = ppo_stage(str(reward_run), pair_files["problems"], tiny_checkpoint, steps=4, checkpoint_every=2,
                      kl={"kind": "adaptive", "kl_coef": 0.1, "target": 0.01, "horizon": 60})
    stages_runner([stage], str(tmp_path / "whole"))
    original = _dies_at(module, 3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        stages_runner([stage], str(tmp_path / "broken"))
    monkeypatch.setattr(module, "step_indices", original)
    stages_runner([stage], str(tmp_path / "broken"))
    _same_weights(tmp_path / "whole/ppo/checkpoint", tmp_path / "broken/ppo/checkpoint")
    whole, broken = metrics(tmp_path / "whole", "ppo"), metrics(tmp_path / "broken", "ppo")
    assert [r["kl_coef"] for r in whole] == [r["kl_coef"] for r in broken]


def test_on_policy_pairs_from_a_reward_model(tiny_checkpoint, pair_files, reward_run, tmp_path, stages_runner):
    stage = {"name": "pairs", "kind": "preference_pairs", "inputs": {"checkpoint": tiny_checkpoint,
                                                                      "problems": pair_files["problems"]},
             "verifier": {"name": "reward_model", "options": {"checkpoint": str(reward_run)}},
             "pairing": "best_vs_worst", "samples_per_prompt": 3, "max_prompts": 10, "heldout_fraction": 0.2,
             "sampling": {"max_new_tokens": 8, "temperature": 1.0}, "threads": 1}
    stages_runner([stage], str(tmp_path))
    pairs = [json.loads(line) for line in (tmp_path / "pairs/pairs/pairs.jsonl").read_text().splitlines()]
    heldout = (tmp_path / "pairs/heldout/pairs.jsonl").read_text().splitlines()
    assert len(pairs) + len(heldout) >= 8 and all(p["chosen_score"] > p["rejected_score"] for p in pairs)


def test_heldout_metrics_do_not_depend_on_how_rows_are_chunked(tiny_checkpoint):
    import torch

    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec
    from llm_core.types import Message, PreferencePair
    from llm_prefopt.dpo_stage import HeldoutPairs
    from llm_prefopt.losses import PairwiseLoss, SimpoConfig
    from llm_prefopt.pairs import batch_of, encode_pair, label_mask, pair_rows

    engine = build_train_engine(EngineSpec(name="torch"), get_registries(), checkpoint=tiny_checkpoint)
    pairs = [encode_pair(PreferencePair([Message("user", f"What is {i} + 1?")], "The answer is" + " 1" * (i % 7),
                                        "The answer is" + " 2" * (i % 5 + 1)), engine.tokenizer, 128)
             for i in range(20)]  # 40 rows: three chunks of different widths
    loss = PairwiseLoss(SimpoConfig(), "simpo")
    chunked = HeldoutPairs(pairs, None, loss, every=1).evaluate(engine)
    rows = pair_rows(pairs)
    logprobs = engine.logprobs(batch_of(rows))
    mask = torch.zeros_like(logprobs)
    for i, row in enumerate(label_mask(rows)):
        mask[i, :len(row)] = torch.tensor(row)
    value, metrics = loss(logprobs, mask)
    assert chunked["eval/loss"] == pytest.approx(float(value), abs=1e-5)
    assert chunked["eval/rewards/margins"] == pytest.approx(float(metrics["rewards/margins"]), abs=1e-5)


def test_pairs_are_read_from_parquet_and_saved_hf_datasets(pair_files, tmp_path, stages_runner):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in Path(pair_files["train"]).read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(records[:10]), tmp_path / "pairs.parquet")
    parquet = str(tmp_path / "pairs.parquet")
    stages = [{"name": "from_parquet", "kind": "preference_pairs", "inputs": {"pairs": parquet}}]
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(records[10:16]).save_to_disk(str(tmp_path / "hf"))
    stages.append({"name": "from_hf", "kind": "preference_pairs", "inputs": {"pairs": str(tmp_path / "hf")}})
    result = stages_runner(stages, str(tmp_path / "run"))
    assert result["from_parquet"].metrics["pairs"] == 10 and result["from_hf"].metrics["pairs"] == 6
