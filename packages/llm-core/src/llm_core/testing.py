"""Testing helpers for core's tests, engine authors and plugin authors alike.

* the engine conformance suite (``EngineHarness``, ``TRAIN_ENGINE_CHECKS``, ``ROLLOUT_ENGINE_CHECKS``,
  from ``llm_core.conformance``): every engine runs it against itself;
* ``kill_run_after_shards``: a run killed mid-stage, to test that stages resume without loss.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llm_core.conformance import ROLLOUT_ENGINE_CHECKS, TRAIN_ENGINE_CHECKS, EngineHarness

__all__ = ["ROLLOUT_ENGINE_CHECKS", "TRAIN_ENGINE_CHECKS", "EngineHarness", "kill_run_after_shards", "run_command"]


def run_command(recipe: Path, root: Path) -> list[str]:
    """The command line of ``llmt run`` for a recipe and run root, with this interpreter."""
    return [sys.executable, "-m", "llm_core.cli", "run", str(recipe), "--root", str(root)]


def kill_run_after_shards(recipe: Path, root: Path, stage: str, shards: int, timeout: float = 240) -> int:
    """Start ``llmt run`` and SIGKILL its whole process group (workers too) as soon as ``stage``
    has committed ``shards`` shard markers. Returns how many markers existed at the kill (or at
    exit, when the run finished first: callers assert it landed mid-stage)."""
    proc = subprocess.Popen(run_command(recipe, root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    markers = root / stage / "_shards"
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(markers.glob("*.json"))) if markers.exists() else 0
        if done >= shards:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    return done
