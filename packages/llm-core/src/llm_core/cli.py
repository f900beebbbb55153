"""The ``llmt`` command line. Heavy modules load inside commands so that ``--help`` stays fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="llmt: one toolkit for the LLM training pipeline, from raw text to an evaluated model.")

SetOption = Annotated[Optional[list[str]],
                      typer.Option("--set", "-s", help="override KEY=VALUE, e.g. stages.sft.lr=1e-4")]
RootOption = Annotated[Optional[str], typer.Option(help="run folder or fsspec URI; default runs/<recipe name>")]


def _console():
    from rich.console import Console

    return Console(soft_wrap=True)


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
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    table = Table(title="plugins")
    for col in ("plugin", "distribution", "version", "status"):
        table.add_column(col)
    for p in host.plugins:
        table.add_row(p.name, p.distribution, p.version, f"[red]broken: {escape(p.error)}[/red]" if p.error else "ok")
    console.print(table)
    components = Table(title="components")
    for col in ("kind", "name", "plugin", "summary"):
        components.add_column(col)
    for registry in registries.all():
        for entry in registry.entries():
            components.add_row(registry.kind, entry.name, entry.plugin, escape(entry.summary))
    console.print(components)


@app.command()
def describe(kind: str, name: str,
             as_json: Annotated[bool, typer.Option("--json", help="print the JSON schema")] = False) -> None:
    """Print the config schema of one component, e.g. `llmt describe stage filter`."""
    from llm_core.errors import LlmtError
    from llm_core.plugins import get_registries
    from llm_core.registry import resolve_kind

    try:
        entry = get_registries()[resolve_kind(kind)].get(name)
    except LlmtError as exc:
        _fail(str(exc))
    schema = entry.schema()
    if as_json:
        typer.echo(json.dumps(schema, indent=2))
        return
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{entry.kind[:-1] if entry.kind.endswith('s') else entry.kind} {entry.name}[/bold]"
                  f" (plugin {entry.plugin}): {entry.summary}")
    if entry.inputs or entry.optional_inputs:
        console.print(f"inputs: required {list(entry.inputs)}, optional {list(entry.optional_inputs)}")
    table = Table()
    for col in ("option", "type", "default", "description"):
        table.add_column(col)
    required = set(schema.get("required", []))
    for field, prop in schema.get("properties", {}).items():
        default = "(required)" if field in required else json.dumps(prop.get("default"))
        table.add_row(field, _type_of(prop), default, prop.get("description", ""))
    console.print(table)


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
        only: Annotated[Optional[list[str]], typer.Option(help="re-run this stage (others run only if needed)")] = None,
        ) -> None:
    """Run a recipe. Complete, unchanged stages are skipped, so a killed run resumes."""
    import logging

    from llm_core.errors import LlmtError
    from llm_core.runner import PipelineRunner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        resolved, host = _load(recipe, set_)
    except LlmtError as exc:
        _fail(str(exc))
    root = root or str(Path("runs") / resolved.name)
    typer.echo(f"run {resolved.name!r} -> {root}", err=True)
    results = PipelineRunner(resolved, root, host).run(only=only, force=force)
    for name, result in results.items():
        if isinstance(result, str):
            typer.echo(f"{name}: {result}")
        else:
            typer.echo(f"{name}: {json.dumps(result.metrics, default=str)}")


@app.command()
def status(root: str) -> None:
    """Show the stages of a run folder: status, wall time, headline metrics."""
    from rich.table import Table

    from llm_core.artifacts import RunStore

    store = RunStore(root)
    stages = store.stages_on_disk()
    if not stages:
        _fail(f"{root}: no stage manifests found (is this a run folder?)")
    table = Table(title=f"run {root}")
    for col in ("stage", "kind", "status", "wall s", "finished", "metrics"):
        table.add_column(col)
    for stage in stages:
        m = store.read_manifest(stage) or {}
        metrics = ", ".join(f"{k}={v}" for k, v in (m.get("metrics") or {}).items() if not isinstance(v, dict))
        table.add_row(stage, m.get("kind", "?"), m.get("status", "?"), str(m.get("wall_time_s", "")),
                      m.get("finished_at", ""), metrics[:120])
    _console().print(table)


def _add_plugin_commands() -> None:
    """Commands that plugins register join the CLI; a broken one is skipped, never fatal."""
    try:
        from llm_core.plugins import get_registries

        for entry in get_registries().commands.entries():
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
