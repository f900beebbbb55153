"""``llmt vllm setup | serve | info``: build vLLM's environment, run a rollout server, show what is there."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Optional

import typer


class Action(enum.StrEnum):
    setup = "setup"
    serve = "serve"
    info = "info"


class BuildChoice(enum.StrEnum):
    cpu = "cpu"
    cuda = "cuda"


def vllm_command(
    action: Annotated[Action, typer.Argument(help="setup: build vLLM's environment; serve: a rollout server "
                                             "on CHECKPOINT; info: where the environment is, what it holds")],
    checkpoint: Annotated[Optional[str], typer.Argument(help="serve: an HF checkpoint folder")] = None,
    env: Annotated[Optional[str], typer.Option(help="the environment (default: $LLMT_VLLM_ENV or "
                                               ".venvs/vllm)")] = None,
    build: Annotated[BuildChoice, typer.Option(help="setup: the CPU build (pinned lock) or CUDA")] = BuildChoice.cpu,
    torch_index: Annotated[Optional[str], typer.Option(
        help="setup: an extra index with torch==2.13.0+cpu, e.g. https://download.pytorch.org/whl/cpu")] = None,
    python: Annotated[Optional[str], typer.Option(help="setup: the Python 3.11 to build from")] = None,
    port: Annotated[int, typer.Option(help="serve: the port")] = 8000,
    threads: Annotated[Optional[int], typer.Option(help="serve: CPU threads of vLLM's worker")] = None,
    device: Annotated[str, typer.Option(help="serve: cpu, cuda or cuda:N")] = "cpu",
    force: Annotated[bool, typer.Option(help="setup: rebuild even an environment built from the same lock")] = False,
) -> None:
    """vLLM's own environment and server, for rollouts with `rollout = {name = "vllm"}`."""
    from llm_vllm import env as vllm_env

    if action is Action.setup:
        target = vllm_env.setup_target(env)
        info = vllm_env.build_env(target, build.value, python, torch_index, echo=typer.echo, force=force)
        typer.echo(f"vLLM's environment is ready at {target}: {json.dumps(info)}")
    elif action is Action.info:
        try:
            found = vllm_env.require_env(env)
        except vllm_env.VllmEnvMissing as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps({"env": str(found), **vllm_env.env_info(found), **vllm_env.probe(found)}, indent=2))
    else:
        serve(checkpoint, env, port, threads, device)


def serve(checkpoint: str | None, env: str | None, port: int, threads: int | None, device: str) -> None:
    """Start a server with the worker extension and wait; rollouts connect with ``options = {url = ...}``."""
    from llm_vllm.config import VllmConfig
    from llm_vllm.env import require_env
    from llm_vllm.server import VllmServer

    if not checkpoint:
        raise typer.BadParameter("serve needs a CHECKPOINT (an HF folder)")
    config = VllmConfig(env=env, port=port, threads=threads)
    server = VllmServer.start(require_env(env), str(Path(checkpoint).resolve()), config, device=device)
    typer.echo(f"vLLM serves {checkpoint} at http://127.0.0.1:{port} (log: {server.log_path}); "
               f"use rollout = {{name = \"vllm\", options = {{url = \"http://127.0.0.1:{port}\"}}}}. Ctrl-C stops it.")
    try:
        code = server.process.wait()
        typer.echo(f"the vLLM server exited with code {code}; its log: {server.log_path}", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
