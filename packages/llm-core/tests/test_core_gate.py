"""The load-time gate of ``llm_core.data_io``: any registered filter drops or refuses records before parsing."""

from __future__ import annotations

import json

import pytest

from llm_core.builtins.filters import RegexFilter, RegexFilterConfig
from llm_core.data_io import RecordGate, load_records, record_text
from llm_core.specs import DecontaminateSpec


def gate(tmp_path, action="drop"):
    return RecordGate(RegexFilter(RegexFilterConfig(pattern="forbidden")), "regex", action,
                      str(tmp_path / "contaminated.jsonl"), str(tmp_path / "decontamination.json"))


def write(tmp_path):
    records = [{"id": "a", "prompt": "fine", "reference": 1},
               {"messages": [{"role": "user", "content": "a forbidden question"},
                             {"role": "assistant", "content": "x"}]},
               {"prompt": "also fine", "reference": 2}]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    return str(path)


def test_gate_drops_flagged_records_and_writes_what_it_dropped(tmp_path):
    logged = []
    g = gate(tmp_path)
    g.on_finish = logged.append
    kept = load_records(write(tmp_path), lambda r: r, rejects_uri=str(tmp_path / "rejects.jsonl"), gate=g)
    assert [r.get("prompt") for r in kept] == ["fine", "also fine"]
    dropped = [json.loads(x) for x in (tmp_path / "contaminated.jsonl").read_text().splitlines()]
    assert [(d["line"], d["reason"]) for d in dropped] == [(2, "regex:matched")]
    summary = json.loads((tmp_path / "decontamination.json").read_text())
    assert summary["checked"] == 3 and summary["dropped"] == 1  # the malformed line is a reject, not checked
    assert logged == [{"decontaminate_checked": 3, "contaminated": 1}]
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 1


def test_gate_refuses_naming_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"data.jsonl:2: record flagged by 'regex'"):
        load_records(write(tmp_path), lambda r: r, rejects_uri=str(tmp_path / "rejects.jsonl"),
                     gate=gate(tmp_path, "refuse"))


def test_record_text_reads_strings_and_messages_not_ids():
    assert record_text({"id": "x", "prompt": "p", "reference": 3, "messages": [{"role": "user", "content": "c"}]}) \
        == "p\nc"


def test_spec_is_a_filter_reference_with_an_action():
    spec = DecontaminateSpec.model_validate({"name": "regex", "options": {"pattern": "x"}, "action": "refuse"})
    assert spec.kind == "filters" and spec.action == "refuse"
    with pytest.raises(ValueError):
        DecontaminateSpec.model_validate({"name": "regex", "action": "ignore"})
