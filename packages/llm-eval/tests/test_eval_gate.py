"""Contamination in its three places: the sharded corpus filter, the report stage, the load-time gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.data_io import RecordGate, load_records
from llm_eval.contamination import ContaminationConfig, ContaminationFilter

HELDOUT = [{"id": f"h{i}", "prompt": p, "reference": r} for i, (p, r) in enumerate([
    ("Mia has 14 shells. Mia finds 9 more shells, then gives away 4. How many shells does Mia have now?", 19),
    ("Tom buys 6 boxes with 7 pens in each box and loses 5 pens. How many pens does Tom have?", 37)])]
PROSE = "A quiet morning in the harbour town began with fishermen mending their nets by the old stone wall."


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def corpus(tmp_path: Path) -> str:
    """Three shards; two documents hold an eval item (one lightly edited), the rest are clean."""
    gsm8k = ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they "
             "are done, there will be 21 trees. How many trees did the grove workers plant today?")
    docs = [{"id": f"d{i}", "text": f"{PROSE} Story {i} goes on about the sea and the weather."} for i in range(9)]
    docs[2]["text"] += " " + gsm8k.upper()
    docs[7]["text"] += " " + HELDOUT[0]["prompt"].replace("Mia", "Zoe")
    for k in range(3):
        write_jsonl(tmp_path / "docs" / f"part-{k}.jsonl", docs[3 * k:3 * k + 3])
    return str(tmp_path / "docs")


def run(stages: list[dict], root: Path, executor: dict | None = None) -> dict:
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    recipe = validate_recipe({"name": "c", "seed": 0, "executor": executor or {"kind": "local", "workers": 1},
                              "stages": stages}, host.registries, host)
    return PipelineRunner(recipe, str(root), host).run()


def filter_stages(tmp_path: Path) -> list[dict]:
    heldout = write_jsonl(tmp_path / "heldout.jsonl", HELDOUT)
    return [
        {"name": "index", "kind": "contamination_index", "inputs": {"heldout": heldout},
         "eval_sets": [{"builtin": "gsm8k"}, {"input": "heldout"}]},
        {"name": "clean", "kind": "filter", "inputs": {"documents": corpus(tmp_path), "index": "index/index"},
         "steps": [{"filter": "contamination", "options": {"index_input": "index"}}], "output_suffix": ".jsonl"},
    ]


def dropped(root: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((root / "clean" / "dropped").glob("*.jsonl"))
            for line in f.read_text().splitlines()]


def test_filter_stage_drops_contaminated_documents_with_item_and_span(tmp_path):
    stages = filter_stages(tmp_path)
    results = run(stages, tmp_path / "run")
    assert results["clean"].metrics["kept"] == 7
    assert results["clean"].metrics["dropped_by_reason"] == {"contamination:gsm8k": 1, "contamination:heldout": 1}
    by_id = {d["id"]: d["metadata"] for d in dropped(tmp_path / "run")}
    assert by_id["d2"]["contamination"]["item_id"] == "cot-0"
    assert by_id["d7"]["contamination"]["item_id"] == "h0"
    assert by_id["d7"]["contamination"]["excerpt"].startswith("Zoe has 14 shells")
    assert run(stages, tmp_path / "run")["clean"] == "skipped"  # resumable: a finished stage is not redone


@pytest.mark.slow
def test_filter_stage_on_ray_gives_the_same_result(tmp_path):
    ray = pytest.importorskip("ray")
    stages = filter_stages(tmp_path)
    try:
        run(stages, tmp_path / "ray", {"kind": "ray", "num_cpus": 2})
    finally:
        if ray.is_initialized():
            ray.shutdown()
    run(stages, tmp_path / "local")
    assert dropped(tmp_path / "ray") == dropped(tmp_path / "local")


def test_report_stage_over_parquet_and_hf_dataset(tmp_path):
    pytest.importorskip("datasets")
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": PROSE}, {"prompt": "Q: " + HELDOUT[1]["prompt"] + " Answer carefully."}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    heldout = write_jsonl(tmp_path / "heldout.jsonl", HELDOUT)
    for source in ("train.parquet", "hf"):
        results = run([{"name": "report", "kind": "contamination_report",
                        "inputs": {"documents": str(tmp_path / source), "heldout": heldout},
                        "eval_sets": [{"input": "heldout"}]}], tmp_path / f"run-{source}")
        assert results["report"].metrics["flagged"] == 1
        report = (tmp_path / f"run-{source}" / "report" / "report.md").read_text()
        assert "1 of 2 records flagged" in report and "heldout/h1" in report


def gate(tmp_path: Path, action: str) -> RecordGate:
    heldout = write_jsonl(tmp_path / "heldout.jsonl", HELDOUT)
    config = ContaminationConfig(eval_sets=[{"uri": heldout, "name": "heldout"}])
    return RecordGate(ContaminationFilter(config), "contamination", action, str(tmp_path / "contaminated.jsonl"),
                      str(tmp_path / "decontamination.json"))


def test_load_time_gate_drops_and_records(tmp_path):
    chats = [{"messages": [{"role": "user", "content": HELDOUT[1]["prompt"]}, {"role": "assistant", "content": "37"}]},
             {"messages": [{"role": "user", "content": "Tom buys 3 boxes with 2 pens in each box and loses 1 pens. "
                                                        "How many pens does Tom have?"},
                           {"role": "assistant", "content": "5"}]}]
    uri = write_jsonl(tmp_path / "chats.jsonl", chats)
    kept = load_records(uri, lambda r: r, rejects_uri=str(tmp_path / "rejects.jsonl"), what="conversations",
                        gate=gate(tmp_path, "drop"))
    assert kept == chats[1:]  # the same template with other numbers is another problem
    lines = (tmp_path / "contaminated.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["line"] == 1
    assert json.loads(lines[0])["metadata"]["contamination"]["item_id"] == "h1"
    summary = json.loads((tmp_path / "decontamination.json").read_text())
    assert summary["checked"] == 2 and summary["dropped"] == 1 and summary["what"] == "conversations"


def test_load_time_gate_refuses_when_asked(tmp_path):
    uri = write_jsonl(tmp_path / "problems.jsonl", HELDOUT)
    with pytest.raises(ValueError, match=r"problems.jsonl:1: record flagged by 'contamination'.*refuses"):
        load_records(uri, lambda r: r, rejects_uri=str(tmp_path / "rejects.jsonl"), gate=gate(tmp_path, "refuse"))


def test_gate_option_validates_in_training_stages():
    from llm_core.config import validate_recipe
    from llm_core.errors import RecipeError
    from llm_core.plugins import get_host

    host = get_host()
    bad = {"name": "x", "stages": [{"name": "rs", "kind": "rejection_sampling",
                                    "inputs": {"checkpoint": "/nonexistent", "problems": "/nonexistent"},
                                    "decontaminate": {"name": "contamination", "options": {"eval_set": []}}}]}
    with pytest.raises(RecipeError, match=r"stages.rs.decontaminate.options"):
        validate_recipe(bad, host.registries, host)
