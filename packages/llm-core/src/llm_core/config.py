"""Typed configs and recipes: loading (TOML / YAML), ``--set`` overrides and whole-recipe validation.

A recipe file looks like::

    name = "demo"            # metadata
    seed = 0
    [executor]               # shared settings: where sharded work runs
    kind = "local"
    workers = 2
    [settings]               # defaults for any stage option of the same name
    seq_len = 256
    [[stages]]
    name = "generate"        # reserved keys: name, kind, inputs, seed, executor, description
    kind = "synthetic_text"
    num_docs = 1000          # every other key is an option of the stage kind

Validation never stops at the first problem: it reports all of them, each with a dotted path.
"""

from __future__ import annotations

import copy
import graphlib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr, ValidationError

from llm_core.errors import RecipeError, close_matches
from llm_core.refs import missing_modules, resolve_refs
from llm_core.schema import Config, pydantic_problems

if TYPE_CHECKING:  # pragma: no cover
    from llm_core.registry import Registries


class ExecutorSpec(Config):
    kind: str = "local"
    options: dict[str, Any] = Field(default_factory=dict)


class StageSpec(Config):
    name: str
    kind: str
    inputs: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    executor: ExecutorSpec | None = None
    description: str = ""


class Recipe(Config):
    name: str
    description: str = ""
    seed: int = 0
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    settings: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageSpec]
    base_dir: str = "."  # folder of the recipe file: relative input paths resolve against it
    _stage_configs: dict[str, Any] = PrivateAttr(default_factory=dict)  # filled by validate_recipe

    def stage(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def stage_config(self, name: str) -> Any:
        """The validated config of a stage (``validate_recipe`` made it; KeyError otherwise)."""
        return self._stage_configs[name]


STAGE_RESERVED = ("name", "kind", "inputs", "seed", "executor", "description")


# -- loading --------------------------------------------------------------------------------


def load_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe into plain data (validation comes later, so that every problem is seen)."""
    path = Path(path)
    if not path.exists():
        raise RecipeError([f"{path}: no such file"], source=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, Exception) as exc:  # yaml errors share no base we can name
        raise RecipeError([f"cannot parse: {exc}"], source=str(path)) from exc
    if not isinstance(data, dict):
        raise RecipeError(["the top level must be a table of keys"], source=str(path))
    data.setdefault("base_dir", str(path.resolve().parent))
    data.setdefault("name", path.stem)
    return data


def parse_override(assignment: str) -> tuple[str, Any]:
    """``stages.sft.lr=1e-4`` -> (``stages.sft.lr``, 0.0001). Values parse as TOML, else string."""
    if "=" not in assignment:
        raise RecipeError([f"--set {assignment!r}: expected KEY=VALUE, e.g. stages.sft.lr=1e-4"])
    key, raw = assignment.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` assignments; ``stages.NAME.KEY`` addresses a stage by its name."""
    data = copy.deepcopy(data)
    problems = []
    for assignment in assignments:
        key, value = parse_override(assignment)
        parts = key.split(".")
        target: Any = data
        if parts[0] == "stages" and len(parts) >= 3:
            stages = data.get("stages") or []
            names = [s.get("name") for s in stages if isinstance(s, dict)]
            if parts[1] not in names:
                hint = close_matches(parts[1], names)
                problems.append(f"--set {key}: no stage named {parts[1]!r}"
                                + (f"; did you mean {hint[0]!r}?" if hint else f"; stages: {names}"))
                continue
            target = stages[names.index(parts[1])]
            parts = parts[2:]
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                problems.append(f"--set {key}: {part!r} is not a table")
                break
        else:
            target[parts[-1]] = value
    if problems:
        raise RecipeError(problems, source="--set")
    return data


# -- validation -----------------------------------------------------------------------------


def _split_options(raw: Any, reserved: Sequence[str]) -> Any:
    """Move every non-reserved key of a table under ``options`` (stages and executors are flat)."""
    if not isinstance(raw, dict):
        return raw
    out = {k: v for k, v in raw.items() if k in reserved}
    out["options"] = {k: v for k, v in raw.items() if k not in reserved}
    if "executor" in out:
        out["executor"] = _split_options(out["executor"], ("kind",))
    return out


def validate_recipe(data: Mapping[str, Any], registries: Registries, host: Any = None) -> Recipe:
    """Validate a whole recipe, raising :class:`RecipeError` listing every problem found.

    Nothing stops at the first problem: the top-level fields, every stage's own schema, every
    component a stage names (generically, through its reference fields) and every plugin's
    ``validate_pipeline`` are all checked. Each stage's options are validated once, here; the
    runner builds stages from the configs kept on the returned recipe.
    """
    data = dict(data)
    raw_stages = data.pop("stages", None)
    if "executor" in data:
        data["executor"] = _split_options(data["executor"], ("kind",))
    problems: list[str] = []
    try:
        top = Recipe.model_validate({**data, "stages": []})
    except ValidationError as exc:
        problems += pydantic_problems(exc, "", list(Recipe.model_fields))
        top = Recipe.model_construct(name=str(data.get("name", "recipe")), settings={}, stages=[],
                                     base_dir=str(data.get("base_dir", ".")), seed=0, executor=ExecutorSpec())
    specs = _stage_specs(raw_stages, problems)
    recipe = top.model_copy(update={"stages": specs})

    names = [s.name for s in specs]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"stages.{dup}: the name is used by {names.count(dup)} stages; names must be unique")
    if isinstance(raw_stages, list) and not raw_stages:
        problems.append("stages: a recipe needs at least one stage")
    if isinstance(top.executor, ExecutorSpec):
        problems += _check_executor(top.executor, "executor", registries)
    configs: dict[str, Any] = {}
    for spec in specs:
        where = f"stages.{spec.name}"
        if spec.executor is not None:
            problems += _check_executor(spec.executor, f"{where}.executor", registries)
        if spec.kind not in registries.stages:
            problems.append(_unknown_stage_kind(spec, registries, where))
            continue
        entry = registries.stages.get(spec.kind)
        config, stage_problems = parse_stage_config(recipe, spec, entry, registries)
        problems += stage_problems + _check_inputs(recipe, spec, entry)
        configs[spec.name] = config

    problems += _check_cycles(recipe)
    if host is not None:
        problems += host.validate_pipeline(recipe, registries)
    if problems:
        raise RecipeError(problems, source=f"recipe {recipe.name!r}")
    recipe._stage_configs = configs
    return recipe


def _stage_specs(raw_stages: Any, problems: list[str]) -> list[StageSpec]:
    """Each stage table on its own, so that one bad stage hides no other stage's problems."""
    if raw_stages is None:
        problems.append("stages: missing; add at least one [[stages]] table")
        return []
    if not isinstance(raw_stages, list):
        problems.append("stages: must be a list of tables ([[stages]] in TOML)")
        return []
    specs = []
    for i, raw in enumerate(raw_stages):
        label = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"[{i}]"
        data = _split_options(raw, STAGE_RESERVED)
        try:
            specs.append(StageSpec.model_validate(data))
        except ValidationError as exc:
            problems += pydantic_problems(exc, f"stages.{label}", list(StageSpec.model_fields))
            # Without its bad optional fields (a seed that is no number...) the stage is still
            # checked, so that one mistake hides none of its other problems.
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} - {"name", "kind"}
            if isinstance(data, dict) and bad and not bad & {"options"}:
                try:
                    specs.append(StageSpec.model_validate({k: v for k, v in data.items() if k not in bad}))
                except ValidationError:
                    pass
    return specs


def _unknown_stage_kind(spec: StageSpec, registries: Registries, where: str) -> str:
    hint = close_matches(spec.kind, registries.stages.names())
    problem = (f"{where}.kind: unknown stage kind {spec.kind!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
               + f" Registered stage kinds: {', '.join(registries.stages.names()) or '(none)'}")
    if registries.stages.broken_plugins:
        problem += " (plugins that failed to load: " + ", ".join(registries.stages.broken_plugins) + ")"
    return problem


def parse_stage_config(recipe: Recipe, spec: StageSpec, entry: Any, registries: Registries) -> tuple[Any, list[str]]:
    """A stage's validated config (shared settings filled in) with its components resolved, and
    the problems found; the config is None when its own schema fails."""
    where = f"stages.{spec.name}"
    try:
        config = entry.parse(stage_options(recipe, spec, entry))
    except ValidationError as exc:
        fields = list(entry.config.model_fields) if entry.config else []
        return None, pydantic_problems(exc, where, fields, entry.config)
    except (TypeError, ValueError) as exc:
        return None, [f"{where}: {exc}"]
    problems = resolve_refs(config, registries, where)
    return config, problems + (missing_modules(config, where) if not problems else [])


def stage_options(recipe: Recipe, spec: StageSpec, entry: Any) -> dict[str, Any]:
    """A stage's options with the recipe's shared settings filled in where the config has them.

    A setting that is a table (``[settings.sampling] max_new_tokens = 64``) is merged into the
    stage's table of the same name key by key, the stage's own keys winning; a component named
    by a string (``verifier = "math"``) takes the table's other keys (``workers``...) beside its name.
    """
    options = dict(spec.options)
    if entry.config is None:
        return options
    for key, value in recipe.settings.items():
        if key not in entry.config.model_fields:
            continue
        if key not in options:
            options[key] = value
        elif isinstance(value, dict) and isinstance(options[key], dict):
            options[key] = {**value, **options[key]}
        elif isinstance(value, dict) and isinstance(options[key], str):
            options[key] = {**value, "name": options[key]}
    return options


def _check_executor(spec: ExecutorSpec, where: str, registries: Registries) -> list[str]:
    from llm_core.refs import parse_component

    config, problems = parse_component(registries.executors, spec.kind, spec.options, where, where)
    return problems or (missing_modules(config, where) if config is not None else [])


def _check_inputs(recipe: Recipe, spec: StageSpec, entry: Any) -> list[str]:
    from llm_core.artifacts import resolve_input_ref

    where = f"stages.{spec.name}.inputs"
    problems = []
    for required in entry.inputs:
        if required not in spec.inputs:
            problems.append(f"{where}.{required}: missing required input {required!r} of stage kind "
                            f"{spec.kind!r}; add inputs = {{ {required} = \"<stage name or path>\" }}")
    declared = set(entry.inputs) | set(entry.optional_inputs)
    stage_names = [s.name for s in recipe.stages]
    for name, ref in spec.inputs.items():
        if declared and "*" not in declared and name not in declared:
            hint = close_matches(name, declared)
            problems.append(f"{where}.{name}: stage kind {spec.kind!r} takes no input {name!r}"
                            + (f"; did you mean {hint[0]!r}?" if hint else f"; it takes {sorted(declared)}"))
        resolved = resolve_input_ref(ref, stage_names, recipe.base_dir)
        if resolved.stage == spec.name:
            problems.append(f"{where}.{name}: a stage cannot read its own output")
        elif resolved.stage is None and not resolved.exists():
            hint = close_matches(ref.split("/")[0], stage_names)
            problems.append(f"{where}.{name}: {ref!r} is neither a stage of this recipe nor an existing "
                            "path" + (f"; did you mean stage {hint[0]!r}?" if hint else ""))
    return problems


def _check_cycles(recipe: Recipe) -> list[str]:
    try:
        stage_order(recipe)
    except graphlib.CycleError as exc:
        return [f"stages: the inputs form a cycle: {' -> '.join(exc.args[1])}"]
    return []


def stage_dependencies(recipe: Recipe) -> dict[str, list[str]]:
    """Each stage's name -> the stages whose outputs it reads (from its inputs)."""
    from llm_core.artifacts import resolve_input_ref

    names = [s.name for s in recipe.stages]
    deps: dict[str, list[str]] = {}
    for spec in recipe.stages:
        stages = (resolve_input_ref(ref, names, recipe.base_dir).stage for ref in spec.inputs.values())
        deps[spec.name] = [s for s in stages if s is not None and s != spec.name]
    return deps


def with_upstream(recipe: Recipe, selected: list[str]) -> set[str]:
    """The selected stages and every stage they read from, directly or not."""
    deps = stage_dependencies(recipe)
    unknown = [name for name in selected if name not in deps]
    if unknown:
        raise RecipeError([f"--only: no stage named {name!r} (stages: {', '.join(deps)})" for name in unknown])
    closure: set[str] = set()
    todo = list(selected)
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo.extend(deps[name])
    return closure


def stage_order(recipe: Recipe) -> list[StageSpec]:
    """Stages in dependency order; among independent stages, the order of the file."""
    names = [s.name for s in recipe.stages]
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name, deps in stage_dependencies(recipe).items():
        sorter.add(name, *deps)
    sorter.prepare()
    position = {n: i for i, n in enumerate(names)}
    ordered: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        ordered.extend(ready)
        sorter.done(*ready)
    by_name = {s.name: s for s in recipe.stages}
    return [by_name[n] for n in ordered]
