"""The ``llmt`` command line. Heavy modules load inside commands so that ``--help`` stays fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="llmt: one toolkit for the LLM training pipeline, from raw text to an evaluated model.")

SetOption = Annotated[Optional[list[str]],
                      typer.Option("--set", "-s", help="override KEY=VALUE, e.g. stages.sft.lr=1e-4")]
RootOption = Annotated[Optional[str], typer.Option(help="run folder or fsspec URI; default runs/<recipe name>")]


def _console():
    from rich.console import Console

    return Console(soft_wrap=True)


def _print_table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; plain aligned columns when piped (greppable, never wrapped)."""
    if sys.stdout.isatty():
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=title)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*(escape(str(c)) for c in row))
        _console().print(table)
        return
    widths = [max(len(str(c)) for c in [col, *(r[i] for r in rows)]) for i, col in enumerate(columns)]
    if title:
        typer.echo(f"# {title}")
    for row in [columns, *rows]:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List plugins (with load errors) and every registered component with the plugin that gave it."""
    from llm_core.plugins import get_host

    host = get_host()
    registries = host.registries
    if as_json:
        data = {"plugins": [vars(p) for p in host.plugins],
                "components": {r.kind: {e.name: e.plugin for e in r.entries()} for r in registries.all()}}
        typer.echo(json.dumps(data, indent=2))
        return
    _print_table("plugins", ["plugin", "distribution", "version", "status"],
                 [[p.name, p.distribution, p.version, f"broken: {p.error}" if p.error else "ok"]
                  for p in host.plugins])
    _print_table("components", ["kind", "name", "plugin", "summary"],
                 [[r.kind, e.name, e.plugin, e.summary] for r in registries.all() for e in r.entries()])


@app.command()
def describe(kind: str, name: str,
             as_json: Annotated[bool, typer.Option("--json", help="print the JSON schema")] = False) -> None:
    """Print the config schema of one component, e.g. `llmt describe stage filter`."""
    from llm_core.errors import LlmtError
    from llm_core.plugins import get_registries
    from llm_core.registry import resolve_kind, singular

    try:
        entry = get_registries()[resolve_kind(kind)].get(name)
    except LlmtError as exc:
        _fail(str(exc))
    schema = entry.schema()
    if as_json:
        typer.echo(json.dumps(schema, indent=2))
        return
    kind_name = singular(entry.kind)
    typer.echo(f"{kind_name} {entry.name} (plugin {entry.plugin}): {entry.summary}")
    if entry.inputs or entry.optional_inputs:
        typer.echo(f"inputs: required {list(entry.inputs)}, optional {list(entry.optional_inputs)}")
    rows = _option_rows(schema, schema.get("$defs", {}), "", entry.config)
    _print_table(None, ["option", "type", "default", "description"], rows)


def _option_rows(schema: dict, defs: dict, prefix: str, model: Any) -> list[list[str]]:
    """One row per option; a nested spec (``optimizer``, ``sampling``...) expands into dotted rows
    (``optimizer.lr``) with the defaults a stage really gets; a component reference is one row."""
    from llm_core.refs import ComponentRef
    from llm_core.registry import singular

    required = set(schema.get("required", []))
    defaults = _defaults(model)
    rows = []
    for field, prop in schema.get("properties", {}).items():
        nested = _nested_schema(prop, defs)
        nested_model = _field_model(model, field)
        if nested_model is not None and issubclass(nested_model, ComponentRef):
            default = defaults.get(field)
            shown = json.dumps(default.name) if isinstance(default, ComponentRef) else _default_of(prop, False)
            rows.append([prefix + field, f"{singular(nested_model.kind)} name, or {{name, options}}",
                         "(required)" if field in required else shown, prop.get("description", "")])
            if nested is not None and set(nested_model.model_fields) - {"name", "options"}:
                extra = {**nested, "properties": {k: v for k, v in nested.get("properties", {}).items()
                                                  if k not in ("name", "options")}}
                rows += _option_rows(extra, defs, f"{prefix}{field}.", nested_model)
        elif nested is not None and nested_model is not None:
            rows.append([prefix + field, "table", "" if field not in required else "(required)",
                         prop.get("description", nested.get("description", "")).split("\n")[0]])
            rows += _option_rows(nested, defs, f"{prefix}{field}.", nested_model)
        else:
            rows.append([prefix + field, _type_of(prop), _default_of(prop, field in required),
                         prop.get("description", "")])
    return rows


def _nested_schema(prop: dict, defs: dict) -> dict | None:
    refs = [prop.get("$ref")] + [p.get("$ref") for p in prop.get("anyOf", [])]
    for ref in refs:
        if ref:
            return defs.get(ref.rsplit("/", 1)[-1])
    return None


def _field_model(model: Any, field: str) -> Any:
    """The pydantic model class a field holds (also inside ``X | None``), or None."""
    import typing

    from pydantic import BaseModel

    info = model.model_fields.get(field) if model is not None else None
    if info is None:
        return None
    candidates = [info.annotation, *typing.get_args(info.annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _defaults(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    out = {}
    for name, info in model.model_fields.items():
        if not info.is_required():
            out[name] = info.get_default(call_default_factory=True)
    return out


def _default_of(prop: dict, required: bool) -> str:
    if required:
        return "(required)"
    if "default" in prop:
        return json.dumps(prop["default"])
    return {"object": "{}", "array": "[]"}.get(prop.get("type", ""), "(computed)")  # a default factory


def _type_of(prop: dict) -> str:
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        return " | ".join(_type_of(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list[{_type_of(prop.get('items', {}))}]"
    return prop.get("type", prop.get("$ref", "any").rsplit("/", 1)[-1])


def _configure_logging() -> None:
    """llmt's own lines at INFO; other libraries' (gensim, transformers...) only from WARNING up, and
    their progress bars off unless stderr is a terminal, so that a run's log reads as its stages."""
    import os

    from llm_core.progress import configure_logging

    configure_logging()
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _load(recipe: Path, overrides: list[str] | None):
    from llm_core.config import apply_overrides, load_recipe_file, validate_recipe
    from llm_core.plugins import get_host

    host = get_host()
    data = apply_overrides(load_recipe_file(recipe), overrides or [])
    return validate_recipe(data, host.registries, host), host


@app.command()
def validate(recipe: Path, set_: SetOption = None) -> None:
    """Check a recipe and report every problem at once, each with its dotted path."""
    from llm_core.errors import LlmtError

    try:
        resolved, _ = _load(recipe, set_)
    except LlmtError as exc:
        _fail(str(exc))
    typer.echo(f"{recipe}: ok, {len(resolved.stages)} stage(s): {', '.join(s.name for s in resolved.stages)}")


@app.command()
def run(recipe: Path,
        root: RootOption = None,
        set_: SetOption = None,
        force: Annotated[bool, typer.Option(help="re-run every stage even if complete")] = False,
        only: Annotated[Optional[list[str]], typer.Option(
            help="re-run this stage and run only what it reads from (when incomplete); repeatable")] = None,
        ) -> None:
    """Run a recipe. Complete, unchanged stages are skipped, so a killed run resumes."""

    from llm_core.config import with_upstream
    from llm_core.errors import LlmtError
    from llm_core.runner import PipelineRunner

    _configure_logging()
    try:
        resolved, host = _load(recipe, set_)
        if only:
            with_upstream(resolved, only)  # an unknown stage name fails here, before any work
    except LlmtError as exc:
        _fail(str(exc))
    import os

    from llm_core.status import headline_text

    root = root or str(Path("runs") / resolved.name)
    typer.echo(f"run {resolved.name!r} -> {root}", err=True)
    runner = PipelineRunner(resolved, root, host)
    try:
        results = runner.run(only=only, force=force)
    except Exception as exc:  # noqa: BLE001 - a stage's error, said once, with where to find the rest
        if os.environ.get("LLMT_TRACEBACK") or runner.failed is None:
            raise
        stage, traceback_uri = runner.failed
        _fail(f"stage {stage!r} failed: {type(exc).__name__}: {exc}\n(full traceback: {traceback_uri}; "
              "LLMT_TRACEBACK=1 prints it here)")
    for name, result in results.items():
        if isinstance(result, str):
            typer.echo(f"{name}: {result}")
        else:
            typer.echo(f"{name}: {headline_text(resolved.stage(name).kind, result.metrics, limit=12)}")


@app.command()
def status(root: str) -> None:
    """Show the stages of a run folder: state (dead runs detected), wall time, headline metrics or error."""
    from llm_core.artifacts import RunStore
    from llm_core.status import status_rows

    if root.startswith("memory://"):
        _fail(f"{root}: a memory:// store lives inside the process that ran it and is gone when it ends; "
              "run with a local path or an object store as --root to inspect it afterwards")
    store = RunStore(root)
    if not store.stages_on_disk():
        _fail(f"{root}: no stage manifests found (is this a run folder?)")
    _print_table(f"run {root}", ["stage", "kind", "status", "wall s", "finished", "metrics"], status_rows(store))


def _add_plugin_commands() -> None:
    """Commands that plugins register join the CLI; a broken one is skipped, never fatal."""
    try:
        from llm_core.plugins import get_host

        for entry in get_host().commands().entries():
            app.command(name=entry.name, help=entry.summary)(entry.factory)
    except Exception as exc:  # noqa: BLE001
        typer.echo(f"warning: plugin commands unavailable: {exc}", err=True)


def main() -> None:
    builtin = {"plugins", "describe", "validate", "run", "status"}
    if not set(sys.argv[1:2]) & builtin:
        _add_plugin_commands()
    app()


if __name__ == "__main__":
    main()
