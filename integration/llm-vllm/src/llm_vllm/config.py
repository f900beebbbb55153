"""Options of the ``vllm`` rollout engine (``rollout = {name = "vllm", options = {...}}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llm_core.config import Config


class VllmConfig(Config):
    """Where vLLM runs and how it is started. Sampling itself comes from each call's ``SamplingSpec``."""

    url: str | None = Field(None, description="a running server started with `llmt vllm serve` "
                            "(http://host:port); None: start one for this engine")
    env: str | None = Field(None, description="vLLM's virtualenv; None: $LLMT_VLLM_ENV, else .venvs/vllm "
                            "in the working directory or a parent")
    port: int | None = Field(None, ge=1, le=65535, description="port of a started server; None: a free one")
    threads: int | None = Field(None, ge=1, description="CPU: OpenMP threads of vLLM's worker, unbound; "
                                "None: vLLM binds one per physical core itself")
    cpu_kv_cache_gib: int = Field(1, ge=1, description="CPU: GiB of KV cache (VLLM_CPU_KVCACHE_SPACE)")
    max_model_len: int | None = Field(None, ge=16, description="prompt + completion limit; None: the model's")
    max_num_seqs: int = Field(256, ge=1, description="sequences decoded together")
    enforce_eager: bool = Field(True, description="no torch.compile / CUDA graphs (start-up in seconds, "
                                "not minutes; turn off for long GPU runs)")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="CUDA: share of GPU memory "
                                                 "vLLM takes (leave room for the trainer); None: vLLM's 0.9")
    enable_sleep_mode: bool = Field(False, description="CUDA: let sleep() free weights and KV cache "
                                    "(vLLM has no sleep mode on CPU)")
    tensor_route: Literal["worker", "hf_folder"] = Field(
        "worker", description="how update_weights(tensors) travels: 'worker' writes one safetensors file "
        "that the worker extension loads; 'hf_folder' writes an HF folder that vLLM's reload_weights reads")
    startup_timeout_s: float = Field(900.0, gt=0, description="wait this long for the server's /health")
    request_timeout_s: float = Field(900.0, gt=0, description="limit of one HTTP call")
    extra_args: tuple[str, ...] = Field((), description="more `vllm serve` arguments, as written")
