"""vLLM rollout engine for llmt (vLLM itself runs in its own environment; see README)."""
