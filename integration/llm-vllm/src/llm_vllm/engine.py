"""``VllmRolloutEngine``: a vLLM server behind the ``RolloutEngine`` contract of ``llm_core.engines``.

How the contract maps onto vLLM (0.32):

* ``generate``: one ``/v1/completions`` request per prompt (sent together, batched by vLLM) with the
  prompt's token ids, ``n``, temperature / top-p / top-k / max tokens, ``stop_token_ids`` = the
  tokenizer's stop ids + the spec's (``ignore_eos``, so that exactly these stop a sample, and vLLM
  keeps the stop token in the output as the contract wants), ``logprobs = 0`` (the sampled token's
  only) and ``return_token_ids``. vLLM filters in the contract's order: temperature, top-k, top-p.
* Log-probs are **raw**: the server runs with ``--logprobs-mode raw_logprobs``, the log-softmax of
  the model's logits before temperature and filtering (vLLM's ``processed_logprobs`` would give
  the log-probs of the filtered, tempered distribution the token was drawn from instead).
* Seeds: vLLM seeds each request and gives its k-th sample ``seed + k``; each prompt's seed is a
  hash of (spec seed, prompt index), so no two samples of a call share a random stream.
* ``update_weights``: a folder through vLLM's in-place ``reload_weights``; HF-named tensors written
  to one safetensors file in shared memory and loaded by the worker extension (or written as an HF
  folder, ``tensor_route = "hf_folder"``). Both then rebuild a tied output head (see
  ``server_side/llmt_vllm_worker.py``) and drop the prefix cache, whose KV blocks are stale.
* ``sleep`` / ``wake``: vLLM's sleep mode (level 1: weights offloaded, KV cache freed) where it
  exists (CUDA, ``enable_sleep_mode``); vLLM has none on CPU, where only the prefix cache is dropped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llm_core.engines import Tokenizer, Weights
from llm_core.specs import SamplingSpec
from llm_core.types import Sample
from llm_vllm.client import VllmClient, VllmError
from llm_vllm.config import VllmConfig
from llm_vllm.server import SERVED_NAME, VllmServer

TIED_HEAD = ("lm_head.weight", "model.embed_tokens.weight")


class VllmRolloutEngine:
    """Generates with a vLLM server; ``server`` is the one it started (None when it connected to one)."""

    def __init__(self, tokenizer: Tokenizer, client: VllmClient, config: VllmConfig,
                 server: VllmServer | None = None):
        self.tokenizer = tokenizer
        self.client, self.config, self.server = client, config, server
        self.last_sync: dict[str, Any] = {}  # route and seconds of the latest update_weights
        self._closer = weakref.finalize(self, server.close) if server is not None else None

    # --- RolloutEngine ------------------------------------------------------------------------

    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int = 1,
                 sampling: SamplingSpec | None = None) -> list[list[Sample]]:
        """``n`` samples per prompt, in prompt order, with raw per-token log-probs."""
        sampling = sampling or SamplingSpec()
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("generate: every prompt needs at least one token (a BOS or a chat header)")
        stops = sorted(set(self.tokenizer.stop_ids()) | set(sampling.stop_token_ids))
        bodies = [self._request(list(p), n, sampling, stops, prompt_seed(sampling.seed, i))
                  for i, p in enumerate(prompt_ids)]
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=min(len(bodies), 64)) as pool:
            answers = list(pool.map(self.client.complete, bodies))
        stop_set = set(stops)
        return [[self._sample(list(p), choice, stop_set) for choice in sorted(a["choices"], key=lambda c: c["index"])]
                for p, a in zip(prompt_ids, answers, strict=True)]

    def update_weights(self, weights: Weights) -> None:
        """New policy weights: an HF folder, or HF-named tensors (``TrainEngine.hf_state_dict()``)."""
        start = time.perf_counter()
        if isinstance(weights, str):
            self._load_folder(weights)
            route, write_s = "folder", 0.0
        else:
            route, write_s = self._load_tensors(weights)
        self.client.reset_prefix_cache()
        self.last_sync = {"route": route, "seconds": time.perf_counter() - start, "write_seconds": write_s}

    def sleep(self) -> None:
        """Free the KV cache and offload weights (CUDA with ``enable_sleep_mode``); on CPU vLLM has
        no sleep mode and keeps its memory: only the prefix cache is dropped."""
        if self.config.enable_sleep_mode:
            self.client.sleep(level=1)
        else:
            self.client.reset_prefix_cache()

    def wake(self) -> None:
        if self.config.enable_sleep_mode:
            self.client.wake_up()

    def close(self) -> None:
        """Stop the server this engine started (it also stops when the engine is collected or at exit)."""
        if self._closer is not None:
            self._closer()

    # --- requests -----------------------------------------------------------------------------

    def _request(self, prompt: list[int], n: int, s: SamplingSpec, stops: list[int], seed: int | None) -> dict:
        return {"model": SERVED_NAME, "prompt": prompt, "n": n, "max_tokens": s.max_new_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k or -1, "seed": seed,
                "logprobs": 0, "stop_token_ids": stops, "ignore_eos": True, "return_token_ids": True,
                "skip_special_tokens": True}

    def _sample(self, prompt: list[int], choice: dict, stops: set[int]) -> Sample:
        ids = list(choice["token_ids"])
        logprobs = [float(x) for x in choice["logprobs"]["token_logprobs"]]
        if len(logprobs) != len(ids):
            raise VllmError(f"vLLM returned {len(ids)} tokens but {len(logprobs)} log-probs")
        reason = "stop" if ids and ids[-1] in stops else "length"
        return Sample(prompt_ids=prompt, token_ids=ids, logprobs=logprobs, text=self.tokenizer.decode(ids),
                      finish_reason=reason)

    # --- weights ------------------------------------------------------------------------------

    def _load_folder(self, folder: str) -> None:
        if "://" in folder and not folder.startswith("file://"):
            raise ValueError(f"update_weights: {folder} is not a local folder; the vLLM server reads weights "
                             "from its own file system (copy the checkpoint to a path both can read)")
        self.client.rpc("llmt_load_folder", path=os.path.abspath(folder.removeprefix("file://")))

    def _load_tensors(self, weights: Mapping[str, Any]) -> tuple[str, float]:
        from safetensors.torch import save_file

        start = time.perf_counter()
        state = safetensors_state(weights)
        workdir = tempfile.mkdtemp(prefix="llmt-vllm-weights-", dir=sync_dir())
        try:
            if self.config.tensor_route == "hf_folder":
                save_file(state, os.path.join(workdir, "model.safetensors"), metadata={"format": "pt"})
                write_s = time.perf_counter() - start
                self.client.rpc("llmt_load_folder", path=workdir)
            else:
                path = os.path.join(workdir, "weights.safetensors")
                save_file(state, path, metadata={"format": "pt"})
                write_s = time.perf_counter() - start
                self.client.rpc("llmt_load_tensors", path=path)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return self.config.tensor_route, write_s


def safetensors_state(weights: Mapping[str, Any]) -> dict[str, Any]:
    """HF-named tensors as safetensors stores them: on CPU, contiguous, no value head, and a tied
    ``lm_head.weight`` left out (safetensors refuses shared storage; vLLM ties it to the embedding)."""
    state: dict[str, Any] = {}
    for name, tensor in weights.items():
        if name.startswith("value_head."):
            continue
        state[name] = tensor.detach().to("cpu").contiguous()
    head, embed = (state.get(k) for k in TIED_HEAD)
    if head is not None and embed is not None and head.data_ptr() == embed.data_ptr():
        del state["lm_head.weight"]
    return state


def sync_dir() -> str:
    """Shared memory when the machine has it (no disk traffic), else the temp folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def prompt_seed(seed: int | None, index: int) -> int | None:
    """A per-prompt seed below 2**62 (vLLM adds the sample index), unrelated to its neighbours'."""
    if seed is None:
        return None
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2
