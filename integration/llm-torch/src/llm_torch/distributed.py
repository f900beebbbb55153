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


def launch(ctx: StageContext, processes: int, options: dict[str, Any]) -> None:
    """Run the stage ``ctx`` describes, with ``options``, in ``processes`` torchrun workers."""
    if "memory://" in ctx.stage_dir:
        raise ValueError(f"stage {ctx.name!r}: processes > 1 needs a run root that every process can "
                         "reach (a local path or an object store), not memory://")
    plain = {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in options.items()}
    spec = {"name": ctx.name, "kind": ctx.kind, "stage_dir": ctx.stage_dir, "inputs": ctx.inputs,
            "seed": ctx.seed, "fingerprint": ctx.fingerprint, "root": ctx.store.root,
            "settings": ctx.settings, "options": plain}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle, default=str)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "llm_torch.distributed", handle.name]
    try:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        done = subprocess.run(command, check=False, env=env)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise RuntimeError(f"stage {ctx.name!r}: torchrun with {processes} processes failed "
                           f"(exit {done.returncode}); see the workers' output above")


def worker_main(spec_path: str) -> None:
    import torch
    import torch.distributed as dist

    from llm_core import artifacts
    from llm_core.plugins import get_registries

    with open(spec_path) as handle:
        spec = json.load(handle)
    backend = "nccl" if torch.cuda.is_available() and spec["options"].get("device", "cpu") != "cpu" else "gloo"
    dist.init_process_group(backend)
    try:
        registries = get_registries()
        entry = registries.stages.get(spec["kind"])
        options = {**spec["options"], "processes": 1}  # this worker is one of the processes
        stage = entry.build(options)
        ctx = StageContext(name=spec["name"], kind=spec["kind"], stage_dir=spec["stage_dir"],
                           inputs=spec["inputs"], seed=spec["seed"], fingerprint=spec["fingerprint"],
                           store=artifacts.RunStore(spec["root"]),
                           executor=registries.executors.build("local", {"workers": 1}),
                           registries=registries, settings=spec["settings"])
        stage.run(ctx)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker_main(sys.argv[1])
