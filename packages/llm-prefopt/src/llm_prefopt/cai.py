"""Constitutional AI (Bai et al. 2022): a TOML constitution, the SL phase, and programmatic principle checks.

A constitution file holds ``[[principles]]``, each with a ``name``, a ``critique`` request, a
``revision`` request and optionally a ``check`` that a program decides:

* ``{kind = "filter", filter = "toxicity", options = {...}}``: any registered filter (llm-data's
  ``toxicity``...) keeps the response;
* ``{kind = "same_language", options = {...}}``: the registered ``language_id`` filter (label only)
  finds the response in the language of the prompt;
* ``{kind = "max_words", max_words = 80}``: the response stays under a length.

The constitution is a stage input (``constitution = "cai/constitution.toml"``, relative to the recipe).
``cai_revise`` (SL phase): for each prompt, sample a response, sample a principle, ask the model to
critique its response by it, then to revise; writes ``conversations/`` (SFT chats on the revisions),
``pairs/`` (revision over original, for DPO or a reward model) and ``report.json`` (each check's
pass rate on originals and revisions). The RL phase is a recipe: ``ai_label`` with the principles
as rubric, then ``reward_model`` + ``ppo`` or ``dpo``. ``constitution_check``: every named
checkpoint's greedy answers to the prompts, each principle's pass rate, one table.
"""

from __future__ import annotations

import random
import tomllib
from typing import Any, Literal

import fsspec
from pydantic import Field, ValidationError

from llm_core.artifacts import atomic_open, write_json
from llm_core.builtins.jsonl import write_records
from llm_core.config import Config
from llm_core.registry import Registries
from llm_core.schema import pydantic_problems
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import Document, Message, StageResult
from llm_prefopt.options import GenerationOptions
from llm_prefopt.sampling import Problem, completion_text, generate, load_problems, prompt_ids, user_turn


class PrincipleCheck(Config):
    kind: Literal["filter", "same_language", "max_words"]
    filter: str = Field("toxicity", description="filter: the registered filter that must keep the response")
    options: dict[str, Any] = Field(default_factory=dict, description="the filter's options")
    max_words: int = Field(80, ge=1)


class Principle(Config):
    name: str
    critique: str = Field(description="asks the model to criticize its response by this principle")
    revision: str = Field(description="asks the model to rewrite its response to follow the principle")
    check: PrincipleCheck | None = None


class Constitution(Config):
    principles: list[Principle] = Field(min_length=1)


def load_constitution(uri: str) -> Constitution:
    """A constitution TOML file; every problem reported with the file and field."""
    try:
        with fsspec.open(uri, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no such constitution file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{uri}: not valid TOML: {exc}") from None
    try:
        return Constitution.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{uri}: " + "; ".join(pydantic_problems(exc, "", ["principles"]))) from None


class Checker:
    """Runs a constitution's programmatic checks; filters come from the registry, built once."""

    def __init__(self, constitution: Constitution, registries: Registries):
        self.principles = [p for p in constitution.principles if p.check is not None]
        self._filters: dict[str, Any] = {}
        for p in self.principles:
            if p.check.kind == "filter":
                self._filters[p.name] = registries.filters.build(p.check.filter, p.check.options)
            elif p.check.kind == "same_language":
                self._filters[p.name] = registries.filters.build("language_id", {
                    "languages": None, "min_score": 0.0, **p.check.options, "label_only": True})

    def passes(self, principle: Principle, prompt: str, response: str) -> bool:
        check = principle.check
        if check.kind == "max_words":
            return len(response.split()) <= check.max_words
        lid = self._filters[principle.name]
        if check.kind == "filter":
            return lid.filter(Document("response", response)) is None
        asked, answered = Document("prompt", prompt), Document("response", response)
        lid.filter(asked)
        lid.filter(answered)
        return asked.metadata.get("language") == answered.metadata.get("language")

    def rates(self, prompts: list[str], responses: list[str]) -> dict[str, float]:
        """Each checked principle's pass rate over the responses."""
        return {p.name: sum(self.passes(p, q, r) for q, r in zip(prompts, responses, strict=True)) / len(prompts)
                for p in self.principles}


class CaiReviseConfig(GenerationOptions):
    max_prompts: int | None = Field(None, ge=1)
    keep: Literal["all", "improved"] = Field("all", description="improved: keep only revisions that pass the "
                                              "sampled principle's check where the original failed it")


def ask(engine: Any, conversations: list[list[Message]], options: GenerationOptions, seed: int) -> list[str]:
    """One sampled answer per conversation."""
    ids = [prompt_ids(engine.tokenizer, conv) for conv in conversations]
    groups = generate(engine, ids, 1, options.sampling.with_seed(seed), options.chunk_prompts)
    return [completion_text(engine.tokenizer, g[0]).strip() for g in groups]


class CaiReviseStage:
    def __init__(self, config: CaiReviseConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        constitution = load_constitution(ctx.input("constitution"))
        with limit_threads(c.threads):
            problems = load_problems(ctx.input("prompts"), ctx.path("rejects.jsonl"))[: c.max_prompts]
            engine = ctx.rollout_engine(c.engine, checkpoint=ctx.input("checkpoint"))
            turns = [user_turn(p.prompt, c.prompt.system_prompt) for p in problems]
            originals = ask(engine, turns, c, ctx.seed)
            rng = random.Random(ctx.seed)
            principles = [rng.choice(constitution.principles) for _ in problems]
            critique_turns = [[*t, Message("assistant", o), Message("user", p.critique)]
                              for t, o, p in zip(turns, originals, principles, strict=True)]
            critiques = ask(engine, critique_turns, c, ctx.seed + 1)
            revision_turns = [[*t, Message("assistant", k), Message("user", p.revision)]
                              for t, k, p in zip(critique_turns, critiques, principles, strict=True)]
            revisions = ask(engine, revision_turns, c, ctx.seed + 2)
        checker = Checker(constitution, ctx.registries)
        chats, pairs, kept = self.keep(problems, originals, revisions, principles, checker, c.prompt.system_prompt)
        prompts = [p.prompt for p in problems]
        report = {"prompts": len(problems), "kept": kept,
                  **{f"original/{k}": v for k, v in checker.rates(prompts, originals).items()},
                  **{f"revised/{k}": v for k, v in checker.rates(prompts, revisions).items()}}
        write_records(ctx.path("conversations", "conversations.jsonl"), chats)
        write_records(ctx.path("pairs", "pairs.jsonl"), pairs)
        write_records(ctx.path("trace.jsonl"), [
            {"prompt": q, "principle": p.name, "original": o, "critique": k, "revision": r}
            for q, p, o, k, r in zip(prompts, principles, originals, critiques, revisions, strict=True)])
        write_json(ctx.path("report.json"), report)
        ctx.log_metrics(report)
        if not chats:
            raise ValueError(f"stage {ctx.name!r} kept no revision (keep = {c.keep!r}); see {ctx.path('trace.jsonl')}")
        return StageResult(metrics=report, artifacts={"conversations": ctx.path("conversations"),
                                                      "pairs": ctx.path("pairs")})

    def keep(self, problems: list[Problem], originals: list[str], revisions: list[str], principles: list[Principle],
             checker: Checker, system_prompt: str) -> tuple[list[dict], list[dict], int]:
        chats, pairs = [], []
        for problem, original, revision, principle in zip(problems, originals, revisions, principles, strict=True):
            if not revision or revision == original:
                continue
            if self.config.keep == "improved" and principle.check is not None and not (
                    checker.passes(principle, problem.prompt, revision)
                    and not checker.passes(principle, problem.prompt, original)):
                continue
            head = [{"role": "system", "content": system_prompt}] if system_prompt else []
            chats.append({"id": problem.id, "messages": [*head, {"role": "user", "content": problem.prompt},
                                                         {"role": "assistant", "content": revision}]})
            pairs.append({"id": problem.id, "prompt": problem.prompt, "chosen": revision, "rejected": original,
                          "principle": principle.name})
        return chats, pairs, len(chats)


class ConstitutionCheckConfig(GenerationOptions):
    max_prompts: int | None = Field(None, ge=1)


class ConstitutionCheckStage:
    """Greedy answers of every checkpoint input to the prompts; each principle's pass rate, one table."""

    def __init__(self, config: ConstitutionCheckConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        constitution = load_constitution(ctx.input("constitution"))
        checker = Checker(constitution, ctx.registries)
        problems = load_problems(ctx.input("prompts"), ctx.path("rejects.jsonl"))[: c.max_prompts]
        prompts = [p.prompt for p in problems]
        greedy = c.model_copy(update={"sampling": c.sampling.model_copy(update={"temperature": 0.0})})
        rows = {}
        with limit_threads(c.threads):
            for name, uri in ctx.inputs.items():
                if name in ("prompts", "constitution"):
                    continue
                engine = ctx.rollout_engine(c.engine, checkpoint=uri)
                answers = ask(engine, [user_turn(q, c.prompt.system_prompt) for q in prompts], greedy, ctx.seed)
                rows[name] = checker.rates(prompts, answers)
                write_records(ctx.path("answers", f"{name}.jsonl"),
                              [{"prompt": q, "answer": a} for q, a in zip(prompts, answers, strict=True)])
        names = [p.name for p in checker.principles]
        lines = ["| checkpoint | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines += [f"| {n} | " + " | ".join(f"{r[k]:.2f}" for k in names) + " |" for n, r in rows.items()]
        with atomic_open(ctx.path("principles.md"), "wt", encoding="utf-8") as handle:
            title = f"principle pass rates on {len(prompts)} prompts (greedy answers)"
            handle.write(title + "\n\n" + "\n".join(lines) + "\n")
        write_json(ctx.path("results.json"), rows)
        metrics = {f"{n}/{k}": round(v, 4) for n, r in rows.items() for k, v in r.items()}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"table": ctx.path("principles.md")})

