"""``extend_context``: a plain-RoPE checkpoint given a RoPE scaling and a longer context.

The checkpoint is a Hugging Face Llama folder (the project's interchange format), so the extension
is a change of its ``config.json`` alone: ``rope_parameters`` become those of the chosen scaling
(``RopeScaling.rope_parameters``, what transformers and every engine read) and
``max_position_embeddings`` the new length (dynamic NTK keeps the trained length there: it is where
that method starts scaling). The weights are copied unchanged; ``llmt.json`` records the extension.
"""

from __future__ import annotations

import logging
from typing import Any

import fsspec

from llm_core.artifacts import atomic_open, exists, join, read_json, write_json
from llm_core.engines import RopeScaling
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_longctx.configs import ExtendContextConfig

log = logging.getLogger("llmt")
CONFIG, SUMMARY = "config.json", "llmt.json"


def rope_base(config: dict[str, Any], where: str) -> tuple[float, int]:
    """(RoPE base, head size) of a plain-RoPE ``config.json``; an already scaled one is an error."""
    params = config.get("rope_parameters") or {}
    kind = params.get("rope_type") or (config.get("rope_scaling") or {}).get("rope_type") or "default"
    if kind != "default":
        raise ValueError(f"{where}: the checkpoint already has RoPE scaling {kind!r}; extend a plain-RoPE "
                         "checkpoint (the pretrained one)")
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return float(params.get("rope_theta") or config.get("rope_theta") or 10000.0), head_dim


def extended_config(config: dict[str, Any], scaling: RopeScaling, max_seq_len: int, where: str) -> dict[str, Any]:
    theta, head_dim = rope_base(config, where)
    trained = config.get("max_position_embeddings")
    rope = scaling.rope_parameters(theta, head_dim)
    original = rope.get("original_max_position_embeddings", trained)
    if trained is not None and original != trained:
        log.warning("%s: the scaling's original_max_position_embeddings (%s) is not the checkpoint's "
                    "max_position_embeddings (%s), the length it was trained at", where, original, trained)
    out = {k: v for k, v in config.items() if k != "rope_scaling"}  # legacy key: transformers 5 prefers it
    out.update(rope_parameters=rope, rope_theta=rope["rope_theta"],
               max_position_embeddings=trained if scaling.dynamic else max_seq_len)
    return out


def copy_file(source: str, target: str) -> None:
    with fsspec.open(source, "rb") as src, atomic_open(target, "wb") as dst:
        dst.write(src.read())


class ExtendContextStage:
    def __init__(self, config: ExtendContextConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        source = ctx.input("checkpoint")
        if not exists(join(source, CONFIG)):
            raise FileNotFoundError(f"{source}: no {CONFIG}; give extend_context an HF checkpoint folder "
                                    "(e.g. pretrain/checkpoint)")
        scaling = c.rope.build(ctx.registries)
        if not isinstance(scaling, RopeScaling):
            raise TypeError(f"stage {ctx.name!r}: rope {c.rope.name!r} is not a RoPE scaling")
        config = extended_config(read_json(join(source, CONFIG)), scaling, c.max_seq_len, join(source, CONFIG))
        target = ctx.path("checkpoint")
        fs, root = fsspec.core.url_to_fs(source)
        for path in fs.ls(root, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name not in (CONFIG, SUMMARY) and fs.isfile(path):
                copy_file(join(source, name), join(target, name))
        summary = read_json(join(source, SUMMARY)) if exists(join(source, SUMMARY)) else {}
        extension = {"rope": c.rope.name, "options": c.rope.options, "max_seq_len": c.max_seq_len}
        write_json(join(target, SUMMARY), {**summary, "context_extension": extension})
        write_json(join(target, CONFIG), config)  # last: the folder is complete once it has a config
        metrics = {"max_seq_len": c.max_seq_len, "rope_theta": config["rope_theta"]}
        ctx.log_metrics({**metrics, "rope_type": config["rope_parameters"]["rope_type"]})
        return StageResult(metrics=metrics, artifacts={"checkpoint": target})
