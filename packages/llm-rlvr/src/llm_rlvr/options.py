"""The option groups the RL stages share (``grpo``, ``rejection_sampling``, ``rlvr_eval``).

In a recipe each group is one table: ``verifier = {name = "math", workers = 2}``,
``sampling = {temperature = 1.0, max_new_tokens = 64}``, ``prompt = {response_prefix = "<think>"}``,
``engine = {name = "torch", device = "cpu"}``. A verifier given by name alone (``verifier = "math"``)
takes its defaults.
"""

from __future__ import annotations

from pydantic import Field

from llm_core.config import Config
from llm_core.refs import VerifierRef
from llm_core.specs import EngineSpec, PromptSpec, RolloutSpec, SamplingSpec


class VerifierSpec(VerifierRef):
    """The reward: a registered verifier, its options, and the process pool that runs it."""

    name: str = Field("math", description="registered verifier giving the reward")
    workers: int = Field(2, ge=0, description="verifier processes (0: in the trainer process)")
    timeout_s: float = Field(30.0, gt=0, description="per-sample limit; a timeout scores 0")


class RlSampling(SamplingSpec):
    max_new_tokens: int = Field(64, ge=1)


class RolloutOptions(Config):
    """How completions are sampled and judged."""

    engine: EngineSpec = Field(default_factory=EngineSpec, description="the policy's engine")
    rollout: RolloutSpec | None = Field(None, description="a separate rollout engine (e.g. vllm) fed the "
                                        "policy's weights each step; None: the engine samples itself")
    verifier: VerifierSpec = Field(default_factory=VerifierSpec)
    sampling: RlSampling = Field(default_factory=RlSampling)
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    chunk_prompts: int = Field(16, ge=1, description="prompts per generate call")
    threads: int | None = Field(None, ge=1, description="torch CPU threads")

    def rollout_spec(self) -> RolloutSpec:
        """The engine that generates: ``rollout``, or the rollout engine of ``engine``'s name."""
        if self.rollout is not None:
            return self.rollout
        e = self.engine
        return RolloutSpec(name=e.name, options=e.options, device=e.device, precision=e.precision)
