"""What a stage receives when it runs, and resumable sharded work.

A sharded stage hands ``ctx.run_shards`` a list of picklable tasks, each with a ``shard_id``. Each
finished shard leaves a completion marker holding its result; a re-run (after a kill, say) skips
shards whose marker matches the stage's fingerprint and runs only the rest, on whichever executor
the recipe chose. Shard functions must write their outputs with ``atomic_open`` so that a killed
shard leaves nothing a reader could mistake for output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from llm_core.data_io import RecordGate
    from llm_core.specs import DecontaminateSpec, EngineSpec, RolloutSpec

from llm_core import artifacts
from llm_core.engines import RolloutEngine, TrainEngine, build_rollout_engine, build_train_engine
from llm_core.protocols import Executor
from llm_core.registry import Registries
from llm_core.types import StageResult

log = logging.getLogger("llmt")


@runtime_checkable
class Stage(Protocol):
    """One step of a recipe. Reads ``ctx.inputs``, writes under ``ctx.stage_dir``."""

    def run(self, ctx: StageContext) -> StageResult | None: ...


@dataclass
class StageContext:
    name: str
    kind: str
    stage_dir: str  # URI of this stage's folder; write every artifact under it
    inputs: dict[str, str]  # input name -> URI
    seed: int
    fingerprint: str
    store: artifacts.RunStore
    executor: Executor
    registries: Registries
    settings: dict[str, Any] = field(default_factory=dict)

    def path(self, *parts: str) -> str:
        """URI of an artifact under this stage's folder."""
        return artifacts.join(self.stage_dir, *parts)

    def input(self, name: str) -> str:
        try:
            return self.inputs[name]
        except KeyError:
            raise KeyError(f"stage {self.name!r} has no input {name!r}; it has {sorted(self.inputs)}") from None

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        record = {"time": round(time.time(), 3), **({"step": step} if step is not None else {}), **metrics}
        self.store.append_metrics(self.name, record)

    def drop_metrics_from(self, step: int) -> None:
        """Forget logged records of ``step`` and later (a resumed training loop logs them again)."""
        self.store.drop_metrics_from(self.name, step)

    # --- engines: stages ask the registry, never construct one themselves -----------------------

    def train_engine(self, spec: EngineSpec, **request: Any) -> TrainEngine:
        """A training engine for ``EngineRequest(**request)`` (seed defaults to the stage's)."""
        request.setdefault("seed", self.seed)
        return build_train_engine(spec, self.registries, **request)

    def rollout_engine(self, spec: RolloutSpec, **request: Any) -> RolloutEngine:
        request.setdefault("seed", self.seed)
        return build_rollout_engine(spec, self.registries, **request)

    def record_gate(self, spec: DecontaminateSpec | None, name: str = "contaminated") -> RecordGate | None:
        """The load-time gate ``spec`` asks for (None: no gate), writing ``<stage>/<name>.jsonl``
        and ``decontamination.json`` and logging its counts. A filter that reads data of the stage
        (an eval set named as one of its inputs) gets the inputs through ``bind_inputs``."""
        if spec is None:
            return None
        from llm_core.data_io import RecordGate

        component = spec.build(self.registries)
        bind = getattr(component, "bind_inputs", None)
        if bind is not None:
            component = bind(dict(self.inputs))
        return RecordGate(component, spec.name, spec.action, self.path(f"{name}.jsonl"),
                          self.path("decontamination.json" if name == "contaminated" else f"{name}.json"),
                          on_finish=self.log_metrics)

    # --- the same context in another process (torchrun workers) --------------------------------

    def to_spec(self) -> dict[str, Any]:
        """Plain data from which ``from_spec`` rebuilds this context in a worker process."""
        return {"name": self.name, "kind": self.kind, "stage_dir": self.stage_dir, "inputs": dict(self.inputs),
                "seed": self.seed, "fingerprint": self.fingerprint, "root": self.store.root,
                "settings": dict(self.settings)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], registries: Registries, executor: Executor) -> StageContext:
        return cls(name=spec["name"], kind=spec["kind"], stage_dir=spec["stage_dir"], inputs=spec["inputs"],
                   seed=spec["seed"], fingerprint=spec["fingerprint"], store=artifacts.RunStore(spec["root"]),
                   executor=executor, registries=registries, settings=spec["settings"])

    def run_shards(self, fn: Callable[[Any], Any], tasks: Sequence[Any], *, desc: str = "") -> list[Any]:
        """Run ``fn`` over tasks, skipping shards finished earlier; results in task order."""
        ids = [str(getattr(t, "shard_id", i)) for i, t in enumerate(tasks)]
        if len(set(ids)) != len(ids):
            raise ValueError(f"stage {self.name!r}: shard ids must be unique, got duplicates in {ids}")
        results: dict[str, Any] = {}
        todo = []
        for shard_id, task in zip(ids, tasks, strict=True):
            marker = self._marker_uri(shard_id)
            if artifacts.exists(marker):
                done = artifacts.read_json(marker)
                if done.get("fingerprint") == self.fingerprint:
                    results[shard_id] = done.get("result")
                    continue
            todo.append((shard_id, task))
        if len(todo) < len(tasks):
            log.info("%s: %d of %d shards already complete, skipped", self.name, len(tasks) - len(todo), len(tasks))
        if todo:
            call = ShardCall(fn, self.path("_shards"), self.fingerprint)
            outputs = self.executor.map(call, todo, desc=desc or self.name)
            for (shard_id, _), output in zip(todo, outputs, strict=True):
                results[shard_id] = output
        return [results[i] for i in ids]

    def _marker_uri(self, shard_id: str) -> str:
        return self.path("_shards", f"{shard_id}.json")


@dataclass(frozen=True)
class ShardCall:
    """Picklable wrapper run in the worker: do the shard, then commit its marker."""

    fn: Callable[[Any], Any]
    marker_dir: str
    fingerprint: str

    def __call__(self, item: tuple[str, Any]) -> Any:
        shard_id, task = item
        result = self.fn(task)
        artifacts.write_json(artifacts.join(self.marker_dir, f"{shard_id}.json"),
                             {"fingerprint": self.fingerprint, "result": result})
        return result
