"""Multi-process data parallel: a stage with ``processes > 1`` re-runs itself under ``torchrun``.

The parent process does the single-writer preparation (tokenizer, token folder), then launches
``torchrun --standalone --nproc_per_node N -m llm_torch.distributed <spec.json>``. Each worker
joins the process group (gloo on CPU, nccl on GPU), rebuilds the stage's context from the spec
and runs the same stage code: the engine wraps its model in DDP, every rank trains on its rows of
the global batch, and rank 0 alone writes metrics and checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from llm_core.stage import StageContext


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def launch(ctx: StageContext, config: Any) -> None:
    """Run the stage ``ctx`` describes with ``config`` (its validated config) in ``config.processes``
    torchrun workers."""
    if "memory://" in ctx.stage_dir:
        raise ValueError(f"stage {ctx.name!r}: processes > 1 needs a run root that every process can "
                         "reach (a local path or an object store), not memory://")
    spec = {"context": ctx.to_spec(), "options": config.model_dump(mode="json")}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={config.processes}", "-m", "llm_torch.distributed", handle.name]
    try:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        done = subprocess.run(command, check=False, env=env)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise RuntimeError(f"stage {ctx.name!r}: torchrun with {config.processes} processes failed "
                           f"(exit {done.returncode}); see the workers' output above")


def worker_main(spec_path: str) -> None:
    """One torchrun worker: the same stage, from the same validated options, as one of the processes."""
    import torch
    import torch.distributed as dist

    from llm_core.errors import RecipeError
    from llm_core.executors.local import LocalExecutor, LocalExecutorConfig
    from llm_core.plugins import get_registries
    from llm_core.refs import resolve_refs

    with open(spec_path) as handle:
        spec = json.load(handle)
    context = spec["context"]
    options = {**spec["options"], "processes": 1}  # this worker is one of the processes
    device = (options.get("engine") or {}).get("device", "cpu")
    dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
    try:
        registries = get_registries()
        entry = registries.stages.get(context["kind"])
        config = entry.parse(options)
        problems = resolve_refs(config, registries, f"stages.{context['name']}")
        if problems:
            raise RecipeError(problems, source=f"stage {context['name']!r} (worker)")
        ctx = StageContext.from_spec(context, registries, LocalExecutor(LocalExecutorConfig(workers=1)))
        entry.build(config).run(ctx)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker_main(sys.argv[1])
