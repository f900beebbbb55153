"""Every hook a plugin may implement, grouped by phase. These docstrings are the plugin API docs.

A plugin is a module (named by an entry point in the ``llmt`` group) holding functions decorated
with ``llm_core.hookimpl`` whose names match the specs below. A function whose name matches no
spec is an error: the plugin is reported broken, so a typo cannot pass silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from llm_core.config import Recipe
    from llm_core.registry import Registries, Registry
    from llm_core.stage import StageContext
    from llm_core.types import StageResult

PROJECT = "llmt"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --- Registration: called once, on first use of the registries. Each receives the registry of
# --- its kind and calls ``registry.add(name, factory, config=ConfigClass)``. When the component
# --- is used, the registry validates its options once into a frozen ``ConfigClass`` instance and
# --- calls ``factory(config)`` (``factory()`` for a component registered without a config).


@hookspec
def register_readers(registry: Registry) -> None:
    """Register readers: ``factory(config)`` returns a ``Reader`` that streams documents from
    one file (JSONL, Parquet...). Called once when registries are first used. Return None."""


@hookspec
def register_writers(registry: Registry) -> None:
    """Register writers: ``factory(config)`` returns a ``Writer`` that writes documents to one
    file atomically. Called once when registries are first used. Return None."""


@hookspec
def register_filters(registry: Registry) -> None:
    """Register document filters: ``factory(config)`` returns a ``Filter`` whose ``filter(doc)``
    gives None to keep or a reason to drop. Called once on first use. Return None."""


@hookspec
def register_transforms(registry: Registry) -> None:
    """Register document transforms (``Transform.transform(doc) -> doc``), such as PII redaction.
    Called once on first use. Return None."""


@hookspec
def register_stages(registry: Registry) -> None:
    """Register recipe stage kinds: ``factory(config)`` returns a ``Stage`` whose
    ``run(ctx)`` does the work; pass ``inputs=(...)`` for the inputs the stage requires.
    Called once on first use. Return None."""


@hookspec
def register_losses(registry: Registry) -> None:
    """Register training losses: ``factory(config)`` returns a pure function over tensors that any
    engine calls with the arguments its signature names (``llm_core.engines``). Called once on
    first use. Return None."""


@hookspec
def register_advantage_estimators(registry: Registry) -> None:
    """Register RL advantage estimators (GRPO, RLOO...): pure functions from rewards to
    advantages. Called once on first use. Return None."""


@hookspec
def register_verifiers(registry: Registry) -> None:
    """Register verifiers: ``factory(config)`` returns a ``Verifier`` used both as an RL reward
    and as an eval metric. Called once on first use. Return None."""


@hookspec
def register_eval_tasks(registry: Registry) -> None:
    """Register evaluation tasks (``EvalTask``). Called once on first use. Return None."""


@hookspec
def register_engines(registry: Registry) -> None:
    """Register training engines: ``factory(config)`` returns a builder whose
    ``train_engine(request: EngineRequest)`` makes a ``TrainEngine`` (the embedded torch engine,
    nanotron...). Called once on first use. Return None."""


@hookspec
def register_rollout_engines(registry: Registry) -> None:
    """Register rollout engines: ``factory(config)`` returns a builder whose
    ``rollout_engine(request)`` makes a ``RolloutEngine`` (the embedded sampler, vLLM...). Called
    once on first use. Return None."""


@hookspec
def register_precision_recipes(registry: Registry) -> None:
    """Register low-precision training recipes (FP8 per-tile, MX formats, QAT):
    ``factory(config)`` returns a ``PrecisionRecipe`` (``llm_core.engines``), whose
    ``apply(model)`` an engine calls on its model when ``EngineSpec.precision_recipe`` names it.
    Called once on first use. Return None."""


@hookspec
def register_context_extensions(registry: Registry) -> None:
    """Register long-context methods. ``factory(config)`` returns a ``llm_core.engines.RopeScaling``
    (PI / NTK / YaRN..., registered under the ``rope_type`` that HF checkpoints name in
    ``rope_parameters``, so that engines find it when they load one) or a
    ``ContextParallelAttention`` (ring attention, named by a stage's ``context_parallel``). Called
    once on first use. Return None."""


@hookspec
def register_executors(registry: Registry) -> None:
    """Register executors: ``factory(config)`` returns an ``Executor`` that maps a function over
    shards (local process pool, Ray...). Called once on first use. Return None."""


@hookspec
def register_callbacks(registry: Registry) -> None:
    """Register training callbacks (``llm_core.training.Callback``: ``on_step(step, metrics,
    engine)`` with saved state) that training stages name in ``callbacks``. Called once on first
    use. Return None."""


@hookspec
def register_commands(registry: Registry) -> None:
    """Register extra ``llmt`` sub-commands: the factory is a typer command function, registered
    under the entry's name. Called when the CLI starts. Return None."""


# --- Validation: called by ``llmt validate`` and before every run.


@hookspec
def validate_pipeline(recipe: Recipe, registries: Registries) -> list[str] | None:
    """Check a whole recipe for problems the per-stage schemas cannot see (a loss that needs a
    reference model the recipe lacks...). Return a list of problems, each starting with its dotted
    path (``stages.grpo.kl_coef: ...``), or None when there are none. Every plugin is asked; all
    problems are reported together."""


# --- Lifecycle events: observers only; return values are ignored.


@hookspec
def on_pipeline_start(recipe: Recipe, root: str) -> None:
    """Called once before the first stage of a run, with the resolved recipe and run root URI.
    Return None (any return value is ignored)."""


@hookspec
def on_pipeline_end(recipe: Recipe, root: str, results: dict[str, Any]) -> None:
    """Called once after the last stage of a successful run; ``results`` maps stage name to its
    ``StageResult`` (or to ``"skipped"`` for a stage that was already complete). Return None."""


@hookspec
def on_stage_start(stage: str, ctx: StageContext) -> None:
    """Called before a stage runs (not for a stage skipped as complete), with its context.
    Return None (ignored)."""


@hookspec
def on_stage_end(stage: str, ctx: StageContext, result: StageResult) -> None:
    """Called after a stage completed and its manifest was written, with its ``StageResult``.
    Return None (ignored)."""
