"""The Ray executor: the same sharded data step on a real local Ray instance (2 CPUs) and on the
local pool, and the same executor working however the driver was launched (`uv run --no-sync`)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llm_core.config import validate_recipe
from llm_core.runner import PipelineRunner

ray = pytest.importorskip("ray", reason="the ray executor needs llm-core[ray]")


def _recipe(executor: dict) -> dict:
    return {"name": "ray-vs-local", "executor": executor, "stages": [
        {"name": "generate", "kind": "synthetic_text", "num_docs": 4000, "num_shards": 4},
        {"name": "clean", "kind": "filter", "inputs": {"documents": "generate/documents"},
         "steps": [{"filter": "length", "options": {"min_chars": 80}}]},
    ]}


def _kept(root: Path) -> dict[str, bytes]:
    return {p.name: gzip.decompress(p.read_bytes()) for p in sorted((root / "clean" / "kept").iterdir())}


def test_ray_executor_gives_the_same_outputs_as_local(host, tmp_path):
    local = validate_recipe(_recipe({"kind": "local", "workers": 2}), host.registries, host)
    PipelineRunner(local, str(tmp_path / "local"), host).run()
    on_ray = validate_recipe(_recipe({"kind": "ray", "num_cpus": 2}), host.registries, host)
    try:
        results = PipelineRunner(on_ray, str(tmp_path / "ray"), host).run()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert results["clean"].metrics["docs"] == 4000
    assert _kept(tmp_path / "ray") == _kept(tmp_path / "local")
    assert len(_kept(tmp_path / "ray")) == 4


REPO_ROOT = Path(__file__).resolve().parents[3]
UV_NO_SYNC_DRIVER = """
import json, sys
from llm_core.executors.ray import RayExecutor, RayExecutorConfig

executor = RayExecutor(RayExecutorConfig(num_cpus=1))
try:
    seen = executor.map(lambda x: (x * 2, sys.executable, sys.path), [1, 2])
finally:
    executor.shutdown()
print(json.dumps({"doubled": [s[0] for s in seen], "worker_python": seen[0][1], "driver_python": sys.executable,
                  "missing_paths": [p for p in sys.path if p and p not in seen[0][2]]}))
"""


@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on the PATH")
def test_ray_executor_works_when_the_driver_runs_under_uv_run_no_sync():
    """Ray's uv integration would start the workers with `uv run --no-sync` in an empty copy of the
    project (every worker dying with "No module named 'ray'", retried for minutes). The executor
    pins them to the driver's interpreter and import path instead. A hang fails after 90 s."""
    proc = subprocess.Popen(["uv", "run", "--no-sync", "python", "-c", UV_NO_SYNC_DRIVER], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        out, err = proc.communicate()
        pytest.fail(f"the driver under `uv run --no-sync` did not finish in 90 s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["doubled"] == [2, 4]
    assert seen["worker_python"] == seen["driver_python"] and seen["missing_paths"] == []


def test_ray_uv_hook_is_off_only_during_init():
    from ray._private import ray_constants

    from llm_core.executors.ray import _without_ray_uv_hook, driver_runtime_env

    before = ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV
    with _without_ray_uv_hook():
        assert ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV is False
    assert ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV == before
    env = driver_runtime_env()
    assert env["py_executable"] == sys.executable
    assert set(env["env_vars"]["PYTHONPATH"].split(os.pathsep)) <= set(sys.path)
