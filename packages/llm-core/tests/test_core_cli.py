from __future__ import annotations

import json

from typer.testing import CliRunner

from llm_core.cli import app

runner = CliRunner()


def test_describe_prints_the_schema(host):
    out = runner.invoke(app, ["describe", "stage", "filter"])
    assert out.exit_code == 0, out.output
    assert "steps" in out.output and "batch_size" in out.output and "documents" in out.output
    schema = json.loads(runner.invoke(app, ["describe", "stages", "synthetic_text", "--json"]).output)
    assert schema["properties"]["num_docs"]["default"] == 1000


def test_describe_unknown_component_suggests(host):
    out = runner.invoke(app, ["describe", "stage", "filtr"])
    assert out.exit_code == 1
    assert "did you mean 'filter'" in out.output


def test_validate_and_run_and_status(host, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "cli"\n[executor]\nkind = "local"\nworkers = 1\n'
                      '[[stages]]\nname = "gen"\nkind = "synthetic_text"\nnum_docs = 50\n')
    out = runner.invoke(app, ["validate", str(recipe)])
    assert out.exit_code == 0 and "ok, 1 stage(s): gen" in out.output
    root = str(tmp_path / "run")
    out = runner.invoke(app, ["run", str(recipe), "--root", root, "--set", "stages.gen.num_docs=60"])
    assert out.exit_code == 0, out.output
    assert "gen: docs=60" in out.output
    out = runner.invoke(app, ["status", root])
    assert out.exit_code == 0 and "completed" in out.output and "gen" in out.output
    out = runner.invoke(app, ["status", str(tmp_path / "nowhere")])
    assert out.exit_code == 1
