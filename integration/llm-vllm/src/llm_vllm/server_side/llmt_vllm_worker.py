"""Runs inside vLLM's workers, in vLLM's own environment (torch, vllm, safetensors; never llm_core).

``--worker-extension-cls llmt_vllm_worker.WeightSync`` adds these methods to every worker; the
adapter calls them through vLLM's ``/collective_rpc`` endpoint. Each returns a small JSON-able dict.
"""

from __future__ import annotations

import os
import time


class WeightSync:
    """In-place weight loading for RL, and the repair of a tied output head after it."""

    def llmt_load_tensors(self, path: str) -> dict:
        """HF-named tensors from one safetensors file, loaded in place (vLLM's layerwise reload)."""
        from safetensors.torch import load_file

        start = time.perf_counter()
        state = load_file(path)
        self.reload_weights(weights_iterator=iter(state.items()))
        tied = self.llmt_refresh_tied_head()
        return {"tensors": len(state), "seconds": time.perf_counter() - start, "tied_head_refreshed": tied}

    def llmt_load_folder(self, path: str) -> dict:
        """An HF checkpoint folder through vLLM's own ``reload_weights(weights_path=...)``."""
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: no such folder on the vLLM server's machine")
        start = time.perf_counter()
        self.reload_weights(weights_path=path)
        tied = self.llmt_refresh_tied_head()
        return {"seconds": time.perf_counter() - start, "tied_head_refreshed": tied}

    def llmt_refresh_tied_head(self) -> bool:
        """Rebuild the output head's kernel from the shared embedding after a reload.

        vLLM's in-place reload never loads ``lm_head.weight`` when it is tied to the embedding, so
        the head's post-load processing is not re-run. On CPU that processing packs the weight into
        a oneDNN / packed-GEMM copy, which then keeps the old values: greedy tokens follow the old
        output head. Re-running it makes the head follow the (reloaded) embedding again."""
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        config = getattr(model, "config", None)
        method = getattr(head, "quant_method", None)
        if method is None or not getattr(config, "tie_word_embeddings", False):
            return False
        method.process_weights_after_loading(head)
        return True
