"""``VllmBackend``: what the ``rollout_engines`` registry builds for ``vllm`` (``rollout_engine(request)``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from llm_core.engines import EngineRequest
from llm_vllm.client import VllmClient
from llm_vllm.config import VllmConfig
from llm_vllm.engine import VllmRolloutEngine
from llm_vllm.env import env_info, require_env
from llm_vllm.server import VllmServer, check_head_size

log = logging.getLogger("llmt.vllm")


class VllmBackend:
    def __init__(self, config: VllmConfig):
        self.config = config

    def rollout_engine(self, request: EngineRequest) -> VllmRolloutEngine:
        """A rollout engine on the request's checkpoint: a server started for it, or the running
        server at ``url`` loaded with the checkpoint's weights."""
        if request.checkpoint is None:
            raise ValueError("the vllm rollout engine generates from a checkpoint (an HF folder); a fresh model "
                             "shape has no weights to serve")
        checkpoint = str(Path(request.checkpoint).resolve())
        if self.config.url:
            client = VllmClient(self.config.url, self.config.request_timeout_s)
            engine = VllmRolloutEngine(load_tokenizer(request, checkpoint), client, self.config)
            engine.update_weights(checkpoint)  # generate follows the requested checkpoint
            return engine
        env = require_env(self.config.env)
        tokenizer = load_tokenizer(request, checkpoint)
        device = resolve_device(request.device, env_info(env).get("build"))
        check_head_size(json.loads((Path(checkpoint) / "config.json").read_text()), device)
        log.info("starting a vLLM server from %s for %s (about 30-90 s)", env, checkpoint)
        server = VllmServer.start(env, checkpoint, self.config, device=device, precision=request.precision)
        return VllmRolloutEngine(tokenizer, server.client, self.config, server=server)


def load_tokenizer(request: EngineRequest, checkpoint: str):
    """The checkpoint's tokenizer, the same class the embedded engine uses, so that prompts render and
    samples stop exactly as they do there."""
    from llm_torch.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.load(request.tokenizer or checkpoint)
    if request.chat_template is not None:
        tokenizer = tokenizer.with_chat_template(request.chat_template)
    return tokenizer


def resolve_device(device: str, build: str | None) -> str:
    """cpu, cuda or cuda:N, checked against the build ``llmt vllm setup`` recorded (None: unknown)."""
    if device == "auto":
        return build or "cpu"
    if build == "cpu" and device.startswith("cuda"):
        raise ValueError(f"rollout device {device!r}, but vLLM's environment is the CPU build; build the CUDA one "
                         "with `uv run llmt vllm setup --build cuda --env .venvs/vllm-cuda` and set env to it")
    return device
