"""Ray executor: the same shard functions, spread over a Ray cluster (``llm-core[ray]``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field

from llm_core.config import Config
from llm_core.progress import progress


class RayExecutorConfig(Config):
    address: str | None = Field(None, description="cluster address; None starts or joins a local one")
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
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False,
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


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
