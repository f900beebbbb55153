"""The ``evaluate`` stage and the ``periodic_eval`` training callback: registered tasks on checkpoints.

Both run the same ``evaluate_task``: a generative task samples ``samples`` completions per example
(greedy at temperature 0) and reports pass@k for each k of ``ks`` (the unbiased estimator) and
pass@1 with a 95% interval; a log-likelihood task picks the choice with the highest log-likelihood
(``TrainEngine.logprobs``) and reports its accuracy with a Wilson interval.

The stage (inputs: one or several named checkpoints) writes ``results.json`` (rows that
``eval_report`` reads) and ``results.md``. The callback evaluates the engine being trained every
``every`` steps and adds ``eval/<task>/pass_at_1`` to that step's metrics (log them by choosing
``every`` as a multiple of the stage's ``log_every``); generative tasks need an engine that can
also generate (the embedded engine can), log-likelihood tasks need only ``logprobs``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open, write_json
from llm_core.config import Config
from llm_core.engines import RolloutEngine, TrainEngine
from llm_core.refs import EvalTaskRef
from llm_core.specs import EngineSpec, RolloutSpec, SamplingSpec
from llm_core.stage import StageContext
from llm_core.stats import mean_interval, wilson_interval
from llm_core.threads import limit_threads
from llm_core.types import StageResult
from llm_eval.generation import PromptSpec, sample_completions
from llm_eval.passk import pass_at_k

log = logging.getLogger("llmt.eval")


class EvalSampling(SamplingSpec):
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(256, ge=1)
    seed: int | None = Field(0, description="None: unseeded")


class EvalOptions(Config):
    """What the stage and the callback share."""

    tasks: list[EvalTaskRef] = Field(min_length=1, description="registered eval tasks, with their options")
    samples: int = Field(1, ge=1, description="completions per example (generative tasks)")
    ks: list[int] = Field(default_factory=lambda: [1], description="k of pass@k (each at most samples)")
    sampling: EvalSampling = Field(default_factory=EvalSampling)
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    max_examples: int | None = Field(None, ge=1, description="the first N examples of each task")
    chunk_prompts: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _ks_fit(self) -> EvalOptions:
        if any(not 1 <= k <= self.samples for k in self.ks):
            raise ValueError(f"every k of ks must lie in 1..samples ({self.samples}), got {self.ks}")
        return self


def evaluate_task(task: Any, name: str, options: EvalOptions, generator: RolloutEngine | None,
                  scorer: TrainEngine | None) -> dict[str, Any]:
    """One task on one model: pass@k (generative) or accuracy (log-likelihood), with a 95% interval."""
    examples = list(task.examples())[: options.max_examples]
    if getattr(task, "kind", "generate") == "loglikelihood":
        if scorer is None:
            raise ValueError(f"task {name!r} is scored by log-likelihood and needs a training engine")
        right = [task.score(ex, ex["choices"][choice_index(scorer, ex, options.prompt, task.config.normalize)]).passed
                 for ex in examples]
        low, high = wilson_interval(sum(right), len(right))
        return {"task": name, "n": len(right), "pass_at_1": sum(right) / len(right), "ci_low": low, "ci_high": high}
    if generator is None:
        raise ValueError(f"task {name!r} generates and needs an engine that can generate")
    groups = sample_completions(generator, [ex["prompt"] for ex in examples], options.samples, options.sampling,
                                options.prompt, options.chunk_prompts)
    passed = [[task.score(ex, c.text).passed for c in group] for ex, group in zip(examples, groups, strict=True)]
    per_example = [sum(p) / len(p) for p in passed]
    low, high = (wilson_interval(sum(sum(p) for p in passed), len(passed)) if options.samples == 1
                 else mean_interval(per_example))
    return {"task": name, "n": len(passed), "samples": options.samples, "pass_at_1": sum(per_example) / len(passed),
            "ci_low": low, "ci_high": high,
            "pass_at_k": {str(k): sum(pass_at_k(len(p), sum(p), k) for p in passed) / len(passed) for k in options.ks}}


def choice_index(engine: TrainEngine, example: Mapping[str, Any], prompt: PromptSpec, normalize: str) -> int:
    """The choice whose tokens, after the prompt, have the highest log-likelihood (sum, or mean per token)."""
    tok = engine.tokenizer
    prompt_ids = prompt.ids(tok, example["prompt"])
    rows, masks, lengths = [], [], []
    for choice in example["choices"]:
        ids = tok.encode(" " + choice)
        rows.append(prompt_ids + ids)
        masks.append([0] * len(prompt_ids) + [1] * len(ids))
        lengths.append(len(ids))
    logprobs = engine.logprobs({"input_ids": rows, "loss_mask": masks}).sum(dim=1).tolist()
    scores = [lp / n if normalize == "mean" else lp for lp, n in zip(logprobs, lengths, strict=True)]
    return max(range(len(scores)), key=scores.__getitem__)


class EvaluateConfig(EvalOptions):
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="the engine that generates")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="the engine that scores choices")
    threads: int | None = Field(None, ge=1)


class EvaluateStage:
    def __init__(self, config: EvaluateConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        if not ctx.inputs:
            raise ValueError(f"stage {ctx.name!r}: give a 'checkpoint' input (or several named checkpoints)")
        rows = []
        with limit_threads(c.threads):
            tasks = [(ref.name, ref.build(ctx.registries)) for ref in c.tasks]
            for name, uri in ctx.inputs.items():
                generates = any(getattr(t, "kind", "generate") == "generate" for _, t in tasks)
                loglik = any(getattr(t, "kind", "") == "loglikelihood" for _, t in tasks)
                generator = ctx.rollout_engine(c.rollout, checkpoint=uri) if generates else None
                scorer = ctx.train_engine(c.engine, checkpoint=uri) if loglik else None
                for task_name, task in tasks:
                    row = evaluate_task(task, task_name, c, generator, scorer)
                    rows.append({"name": f"{name}/{task_name}", "checkpoint": uri, **row})
                    log.info("%s %s: pass@1 %.3f [%.3f, %.3f]", name, task_name, row["pass_at_1"], row["ci_low"],
                             row["ci_high"])
        write_json(ctx.path("results.json"), {"rows": rows})
        with atomic_open(ctx.path("results.md"), "wt", encoding="utf-8") as handle:
            handle.write("| checkpoint / task | n | pass@1 | 95% interval | pass@k |\n|---|---|---|---|---|\n")
            handle.writelines(f"| {r['name']} | {r['n']} | {r['pass_at_1']:.3f} | [{r['ci_low']:.3f}, "
                              f"{r['ci_high']:.3f}] | {r.get('pass_at_k', '-')} |\n" for r in rows)
        metrics = {f"pass_at_1/{r['name']}": round(r["pass_at_1"], 4) for r in rows}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"results": ctx.path("results.json")})


class PeriodicEvalConfig(EvalOptions):
    every: int = Field(50, ge=1, description="evaluate after every this many steps")


class PeriodicEval:
    """A training callback (``llm_core.training.Callback``): the registered tasks on the engine being trained."""

    name = "periodic_eval"

    def __init__(self, config: PeriodicEvalConfig):
        self.config = config
        self.history: list[dict[str, Any]] = []
        self._tasks: list[tuple[str, Any]] | None = None

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        if (step + 1) % self.config.every:
            return
        if self._tasks is None:
            from llm_core.plugins import get_registries

            self._tasks = [(ref.name, ref.build(get_registries())) for ref in self.config.tasks]
        generator = engine if isinstance(engine, RolloutEngine) else None
        for name, task in self._tasks:
            row = evaluate_task(task, name, self.config, generator, engine)
            metrics[f"eval/{name}/pass_at_1"] = row["pass_at_1"]
            self.history.append({"step": step + 1, **row})

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = list(state.get("history", []))
