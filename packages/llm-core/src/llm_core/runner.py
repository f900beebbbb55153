"""The pipeline runner: stages in dependency order, each skipped when already complete.

A stage's fingerprint hashes its kind, resolved options, seed and the fingerprints of its inputs
(an upstream stage's fingerprint, or an external path's listing). A stage whose manifest says
``completed`` with the same fingerprint is skipped; any change re-runs it, and since its
fingerprint feeds its consumers', everything downstream re-runs too.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import socket
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from llm_core import artifacts
from llm_core.config import Recipe, StageSpec, parse_stage_config, stage_order, with_upstream
from llm_core.errors import RecipeError
from llm_core.plugins import PluginHost
from llm_core.progress import format_duration
from llm_core.stage import StageContext
from llm_core.status import headline_text
from llm_core.types import StageResult

log = logging.getLogger("llmt")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions(host: PluginHost) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in {p.distribution for p in host.plugins} | {"llm-core"}:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class PipelineRunner:
    def __init__(self, recipe: Recipe, root: str, host: PluginHost):
        self.recipe = recipe
        self.store = artifacts.RunStore(root)
        self.host = host
        self.registries = host.registries
        self.fingerprints: dict[str, str] = {}
        self._warned_memory = False
        self.failed: tuple[str, str] | None = None  # (stage, traceback file) once a stage has raised

    def run(self, only: list[str] | None = None, force: bool = False) -> dict[str, Any]:
        """Run the recipe's stages in dependency order; complete, unchanged ones are skipped.

        ``only``: re-run these stages, and run just what they read from (when incomplete); the
        stages downstream of them are left as they are."""
        order = stage_order(self.recipe)
        selected = with_upstream(self.recipe, only) if only is not None else None
        self.store.write_run({"recipe": self.recipe.model_dump(mode="json"),
                              "order": [s.name for s in order], "updated_at": _now()})
        self.host.on_pipeline_start(self.recipe, self.store.root)
        results: dict[str, Any] = {}
        for spec in order:
            if selected is not None and spec.name not in selected:
                results[spec.name] = "not selected (--only)"
                continue
            results[spec.name] = self._run_stage(spec, force=force or (only is not None and spec.name in only))
        self.host.on_pipeline_end(self.recipe, self.store.root, results)
        return results

    def input_uris(self, spec: StageSpec) -> dict[str, str]:
        names = [s.name for s in self.recipe.stages]
        uris = {}
        for key, ref in spec.inputs.items():
            resolved = artifacts.resolve_input_ref(ref, names, self.recipe.base_dir)
            if resolved.stage is not None:
                uris[key] = artifacts.join(self.store.stage_dir(resolved.stage), resolved.subpath) \
                    if resolved.subpath else self.store.stage_dir(resolved.stage)
            else:
                uris[key] = resolved.uri
        return uris

    def stage_fingerprint(self, spec: StageSpec, options: Any, seed: int) -> tuple[str, dict[str, Any]]:
        names = [s.name for s in self.recipe.stages]
        inputs = {}
        for key, ref in sorted(spec.inputs.items()):
            resolved = artifacts.resolve_input_ref(ref, names, self.recipe.base_dir)
            if resolved.stage is not None:
                inputs[key] = {"ref": ref, "fingerprint": self.fingerprints[resolved.stage]}
            else:
                inputs[key] = {"ref": ref, "fingerprint": artifacts.path_fingerprint(resolved.uri)}
        config = options.model_dump(mode="json") if options is not None else {}
        fp = artifacts.fingerprint({"kind": spec.kind, "config": config, "seed": seed, "inputs": inputs})
        return fp, {"config": config, "config_hash": artifacts.fingerprint(config), "inputs": inputs}

    def stage_config(self, spec: StageSpec, entry: Any) -> Any:
        """The config ``validate_recipe`` made; a recipe built without it is validated here, once."""
        try:
            return self.recipe.stage_config(spec.name)
        except KeyError:
            config, problems = parse_stage_config(self.recipe, spec, entry, self.registries)
            if problems:
                raise RecipeError(problems, source=f"stage {spec.name!r}") from None
            return config

    def _run_stage(self, spec: StageSpec, force: bool) -> StageResult | str:
        entry = self.registries.stages.get(spec.kind)
        options = self.stage_config(spec, entry)
        seed = spec.seed if spec.seed is not None else self.recipe.seed
        fp, details = self.stage_fingerprint(spec, options, seed)
        self.fingerprints[spec.name] = fp
        stage_dir = self.store.stage_dir(spec.name)
        previous = self.store.read_manifest(spec.name)
        if previous and previous.get("fingerprint") == fp and previous.get("status") == "completed" and not force:
            log.info("%s: complete and unchanged, skipped", spec.name)
            return "skipped"
        if previous and (previous.get("fingerprint") != fp or force):
            # Changed config or inputs: nothing of the old outputs may leak into the new ones.
            artifacts.remove_tree(stage_dir)
        artifacts.remove_temporaries(stage_dir)

        executor = self.executor_for(spec)
        ctx = StageContext(name=spec.name, kind=spec.kind, stage_dir=stage_dir, inputs=self.input_uris(spec),
                           seed=seed, fingerprint=fp, store=self.store, executor=executor,
                           registries=self.registries, settings=dict(self.recipe.settings))
        manifest = {"stage": spec.name, "kind": spec.kind, "fingerprint": fp, "seed": seed, **details,
                    "versions": package_versions(self.host), "plugin": entry.plugin,
                    "status": "running", "started_at": _now(), "pid": os.getpid(), "host": socket.gethostname()}
        self.store.write_manifest(spec.name, manifest)
        self.host.on_stage_start(spec.name, ctx)
        start = time.perf_counter()
        try:
            stage = entry.build(options)
            result = stage.run(ctx) or StageResult()
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest.update(status=status, error=f"{type(exc).__name__}: {exc}", finished_at=_now(),
                            wall_time_s=round(time.perf_counter() - start, 3))
            self.store.write_manifest(spec.name, manifest)
            with contextlib.suppress(Exception):  # the full traceback, for whoever debugs the stage
                with artifacts.atomic_open(artifacts.join(stage_dir, "error.txt"), "w", encoding="utf-8") as out:
                    out.write(traceback.format_exc())
            self.failed = (spec.name, artifacts.join(stage_dir, "error.txt"))
            raise
        finally:
            executor.shutdown()
        manifest.update(status="completed", finished_at=_now(), wall_time_s=round(time.perf_counter() - start, 3),
                        metrics=result.metrics, artifacts=result.artifacts)
        self.store.write_manifest(spec.name, manifest)
        self.host.on_stage_end(spec.name, ctx, result)
        log.info("%s: completed in %s  %s", spec.name, format_duration(manifest["wall_time_s"]),
                 headline_text(spec.kind, result.metrics))
        return result

    def executor_for(self, spec: StageSpec) -> Any:
        """The stage's executor. A ``memory://`` store lives inside this process: worker processes
        cannot see it, so a local executor runs its shards in-process, and others are refused."""
        executor_spec = spec.executor or self.recipe.executor
        in_memory = self.store.root.startswith("memory://") or any(
            uri.startswith("memory://") for uri in self.input_uris(spec).values())
        if in_memory and executor_spec.kind == "local" and executor_spec.options.get("workers") != 1:
            if not self._warned_memory:
                log.info("memory:// run root: sharded work runs in this process (workers = 1)")
                self._warned_memory = True
            return self.registries.executors.build("local", {**executor_spec.options, "workers": 1})
        if in_memory and executor_spec.kind != "local":
            raise RecipeError([f"stages.{spec.name}.executor: a memory:// store lives inside this process, "
                               f"so {executor_spec.kind!r} workers cannot read or write it; use a local path "
                               "or an object store (s3://, gs://) as the run root and inputs"])
        return self.registries.executors.build(executor_spec.kind, executor_spec.options)
