"""Ray executor: the same shard functions, spread over a Ray cluster (``llm-core[ray]``).

Where the workers' Python comes from is pinned here rather than left to how the driver was
launched. Ray's own uv integration (on by default since Ray 2.43) notices a driver started by
``uv run`` and starts every worker with that ``uv run`` command inside an uploaded copy of the
working directory; under ``uv run --no-sync`` that copy has no packages and every worker dies
with ``No module named 'ray'``. The executor switches that integration off for its ``ray.init``
and says instead:

* a local instance started here runs its workers with the driver's interpreter
  (``sys.executable``) and the driver's ``sys.path``;
* a cluster it joins (``address``, or ``RAY_ADDRESS`` as set by ``ray job submit``) runs them with
  the Python its nodes were started with, which must have the same packages installed
  (the llm-core README says how).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import Field

from llm_core.config import Config
from llm_core.progress import progress


class RayExecutorConfig(Config):
    address: str | None = Field(
        None, description="cluster to join ('auto', 'host:port', 'ray://host:port'); None starts a local "
                          "instance here, pinned to this interpreter (or joins RAY_ADDRESS when that is set)")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local instance started here")
    cpus_per_task: float = Field(1.0, gt=0)

    def required_modules(self) -> dict[str, str]:
        return {"ray": "pip install 'llm-core[ray]'"}


class RayExecutor:
    """Each shard is one Ray task; results come back in input order."""

    def __init__(self, config: RayExecutorConfig):
        address, num_cpus, cpus_per_task = config.address, config.num_cpus, config.cpus_per_task
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("the ray executor needs Ray: pip install 'llm-core[ray]'") from exc
        self._ray = ray
        self._started_here = False
        if not ray.is_initialized():
            local = address is None and not os.environ.get("RAY_ADDRESS")
            with _without_ray_uv_hook():
                ray.init(address="local" if local else address, num_cpus=num_cpus,
                         runtime_env=driver_runtime_env() if local else None, include_dashboard=False,
                         log_to_driver=False, ignore_reinit_error=True)
            self._started_here = True
        self.cpus_per_task = cpus_per_task

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str = "") -> list[Any]:
        ray = self._ray
        remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=0)(_call)
        fn_ref = ray.put(fn)
        refs = [remote.remote(fn_ref, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(items)
        pending = list(refs)
        with progress(len(items), desc) as advance:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    results[index[ref]] = ray.get(ref)
                    advance()
        return results

    def shutdown(self) -> None:
        if self._started_here:
            self._ray.shutdown()
            self._started_here = False


def driver_runtime_env() -> dict[str, Any]:
    """Workers of a local instance: this interpreter, and this process's import path (editable
    workspace packages, plugins on ``sys.path``), however the driver itself was started."""
    path = [entry for entry in sys.path if entry and os.path.isdir(entry)]
    return {"py_executable": sys.executable, "env_vars": {"PYTHONPATH": os.pathsep.join(path)}}


@contextlib.contextmanager
def _without_ray_uv_hook() -> Iterator[None]:
    """Ray's uv integration off for one ``ray.init``. Its switch (``RAY_ENABLE_UV_RUN_RUNTIME_ENV``)
    is read from the environment when Ray is imported, so the module constant that holds it is set
    here; Ray versions before the integration do not have it and need nothing."""
    from ray._private import ray_constants

    if not hasattr(ray_constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV"):
        yield
        return
    before = ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    try:
        yield
    finally:
        ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = before


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
