"""What a new user met in their first hour: inputs in every documented form, memory roots, a status
that reads, errors that say what and where, validation that hides nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from llm_core.artifacts import RunStore
from llm_core.cli import app
from llm_core.config import validate_recipe
from llm_core.errors import RecipeError
from llm_core.runner import PipelineRunner


def _filter_stage(documents, **extra):
    return {"name": "clean", "kind": "filter", "inputs": {"documents": documents},
            "steps": [{"filter": "length", "options": {"min_chars": 3}}], **extra}


def _run(host, root, stages, executor=None):
    data = {"name": "t", "stages": stages, **({"executor": executor} if executor else {})}
    return PipelineRunner(validate_recipe(data, host.registries, host), str(root), host).run()


def _kept(root, stage="clean"):
    import gzip

    return [json.loads(line) for f in sorted((root / stage / "kept").glob("*.jsonl.gz"))
            for line in gzip.open(f, "rt")]


# --- Hugging Face datasets folders ---------------------------------------------------------------


@pytest.fixture
def hf_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    single = tmp_path / "single"
    datasets.Dataset.from_dict({"text": ["alpha beta", "gamma delta", "epsilon"]}).save_to_disk(str(single))
    both = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["train one", "train two"]}),
                          "test": datasets.Dataset.from_dict({"text": ["test one"]})}).save_to_disk(str(both))
    return single, both


def test_a_saved_dataset_is_read_as_one_source_not_as_jsonl(host, hf_folders, tmp_path):
    single, _ = hf_folders
    _run(host, tmp_path / "run", [_filter_stage(str(single))], {"kind": "local", "workers": 1})
    assert [r["text"] for r in _kept(tmp_path / "run")] == ["alpha beta", "gamma delta", "epsilon"]
    assert not list((tmp_path / "run" / "clean").rglob("rejects*")), "its metadata files are not data"


def test_a_dataset_dict_needs_a_split_and_names_them(host, hf_folders, tmp_path):
    _, both = hf_folders
    with pytest.raises(ValueError, match=r"holds the splits \['train', 'test'\] and no split was chosen"):
        _run(host, tmp_path / "a", [_filter_stage(str(both))], {"kind": "local", "workers": 1})
    stage = _filter_stage(str(both), reader={"name": "hf_dataset", "options": {"split": "test"}})
    _run(host, tmp_path / "b", [stage], {"kind": "local", "workers": 1})
    assert [r["text"] for r in _kept(tmp_path / "b")] == ["test one"]


# --- memory:// roots -----------------------------------------------------------------------------


def test_memory_root_works_with_the_default_executor(host, memory_root):
    """The default executor is a process pool, which cannot see an in-process store: the runner runs
    the shards in-process instead, and says so."""
    stages = [{"name": "gen", "kind": "synthetic_text", "num_docs": 40, "num_shards": 4},
              _filter_stage("gen/documents")]
    result = _run(host, memory_root, stages)  # no executor given: local with one worker per core
    assert result["clean"].metrics["docs"] == 40


def test_memory_root_is_refused_by_a_ray_executor(host, memory_root):
    stages = [{"name": "gen", "kind": "synthetic_text", "num_docs": 4, "num_shards": 1}]
    with pytest.raises(RecipeError, match="memory:// store lives inside this process"):
        _run(host, memory_root, stages, {"kind": "ray"})


def test_status_of_a_memory_root_says_why_it_cannot_be_shown():
    out = CliRunner().invoke(app, ["status", "memory://runs/x"])
    assert out.exit_code == 1 and "lives inside the process that ran it" in out.output


def test_file_uri_with_an_escaped_space_is_the_folder_with_the_space(host, tmp_path):
    folder = tmp_path / "with space"
    folder.mkdir()
    (folder / "docs.jsonl").write_text('{"text": "hello world"}\n')
    root = tmp_path / "run root"
    _run(host, "file://" + str(root).replace(" ", "%20"),
         [_filter_stage("file://" + str(folder / "docs.jsonl").replace(" ", "%20"))], {"kind": "local", "workers": 1})
    assert [r["text"] for r in _kept(root)] == ["hello world"]
    assert not list(tmp_path.glob("*%20*")), "no folder literally named with %20"


# --- status --------------------------------------------------------------------------------------


def test_status_shows_the_stages_own_order_rounded_and_the_error_of_a_failed_stage(host, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": "some words here"}) + "\n" for _ in range(3)))
    _run(host, tmp_path / "run", [_filter_stage(str(docs))], {"kind": "local", "workers": 1})
    store = RunStore(str(tmp_path / "run"))
    manifest = store.read_manifest("clean")
    assert list(manifest["metrics"])[:2] == ["docs", "kept"], "the stage's own order, not alphabetical"
    (tmp_path / "empty").mkdir()  # exists (validation passes), holds no data: the stage fails at run time
    with pytest.raises(FileNotFoundError):
        _run(host, tmp_path / "run", [_filter_stage(str(tmp_path / "empty"))], {"kind": "local", "workers": 1})
    out = CliRunner().invoke(app, ["status", str(tmp_path / "run")])
    assert "failed" in out.output and "no data files in this folder" in out.output
    assert (tmp_path / "run" / "clean" / "error.txt").read_text().startswith("Traceback")


def test_status_says_dead_for_a_stage_whose_process_is_gone(tmp_path):
    import socket

    from llm_core.status import round_value, stage_state

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    manifest = {"status": "running", "pid": int(dead.stdout), "host": socket.gethostname()}
    assert stage_state(manifest).startswith("dead")
    assert stage_state({**manifest, "pid": os.getpid()}) == "running"
    assert stage_state({**manifest, "host": "elsewhere"}) == "running (on elsewhere)"
    assert round_value(0.123456789) == 0.1235 and round_value({"a": 1234.5678}) == {"a": 1235.0}


def test_run_failure_is_one_clear_line_not_a_traceback(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "x"\n[executor]\nkind = "local"\nworkers = 1\n[[stages]]\nname = "clean"\n'
                      'kind = "filter"\ninputs = { documents = "%s" }\n'
                      'steps = [{ filter = "length" }]\n' % (tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    out = subprocess.run([sys.executable, "-m", "llm_core.cli", "run", str(recipe), "--root", str(tmp_path / "r")],
                         capture_output=True, text=True, env={**os.environ, "LLMT_TRACEBACK": ""})
    assert out.returncode == 1
    assert "stage 'clean' failed" in out.stderr and "Traceback" not in out.stderr
    assert "error.txt" in out.stderr


# --- validation ----------------------------------------------------------------------------------


def test_validate_reports_a_bad_regex_with_its_path_and_the_other_stages_problems(host, tmp_path):
    stages = [{"name": "gen", "kind": "synthetic_text", "seed": "abc"},
              {"name": "a", "kind": "filter", "inputs": {"documents": "gen/documents"},
               "steps": [{"filter": "regex", "options": {"pattern": "[unterminated"}}]},
              {"name": "b", "kind": "filter", "inputs": {"documents": "gen/documents"},
               "steps": [{"filter": "lenght"}]}]
    with pytest.raises(RecipeError) as error:
        validate_recipe({"name": "v", "stages": stages}, host.registries, host)
    text = str(error.value)
    assert "stages.gen.seed" in text
    assert "stages.a.steps[0].filter.options.pattern" in text or "stages.a.steps[0].filter.options" in text
    assert "not a valid regular expression" in text
    assert "stages.b.steps[0].filter: unknown filter 'lenght'; did you mean 'length'?" in text


def test_unknown_components_read_in_good_english(host):
    from llm_core.refs import LossRef, resolve_refs

    problems = resolve_refs(LossRef(name="grpoo"), host.registries, "stages.x.loss")
    assert problems and problems[0].startswith("stages.x.loss: unknown loss 'grpoo'")


def test_validate_names_a_missing_optional_package_with_its_install_command(host, monkeypatch):
    from llm_core.builtins.synthetic import SyntheticTextConfig

    monkeypatch.setattr(SyntheticTextConfig, "required_modules",
                        lambda self: {"no_such_module_xyz": "pip install no-such-module"})
    with pytest.raises(RecipeError, match=r"stages.gen: needs the Python package 'no_such_module_xyz'.*"
                                          r"pip install no-such-module"):
        validate_recipe({"name": "v", "stages": [{"name": "gen", "kind": "synthetic_text"}]}, host.registries, host)
