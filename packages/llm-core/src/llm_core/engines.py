"""The engine contract: what every training engine, rollout engine and tokenizer provides.

This module is the single source for the contract (the llm-core README summarizes it). Stages
type engines with these protocols and never reach past them; the embedded engine (llm-torch),
nanotron and vLLM adapters implement them and run ``llm_core.testing``'s conformance suite
against themselves. Tensors are typed ``Any`` so that this module never imports torch.

**Batches.** A batch is a mapping. ``input_ids`` (B, T) is required: a tensor, or lists of ids of
any lengths (right-padded by the engine). Optional: ``attention_mask`` (B, T); ``labels`` (B, T)
aligned so that ``labels[:, t]`` is the token predicted at position t (-100: no loss); or
``loss_mask`` (B, T) marking which tokens of ``input_ids`` are targets (1) (without either, every
real next token is a target). Every other key (``advantages``, ``old_logprobs``, ``ref_logprobs``...)
is a loss input, per row (B,) or per token (B, T), padded like ``input_ids``.

**Losses** are pure functions. ``train_step`` calls a loss with the keyword arguments its
signature names among ``logits`` (B, T, V), ``labels`` (B, T), ``logprobs`` (B, T: log p(label) in
fp32, 0 where ignored), ``mask`` (B, T float: 1 where a label counts), ``values`` (B, T: the
value head, when the engine has one) and the extra batch keys. A loss returns a scalar tensor,
or ``(scalar, {name: number})`` whose numbers join the step's metrics.

**Distributions.** ``TrainEngine.top_logprobs(batch, k)`` gives the next-token distribution at
every position as its ``k`` largest log-probabilities and their ids (the storage-cheap form that
distillation caches; the remaining mass is ``1 - values.exp().sum(-1)``), or the whole vocabulary
with ``k = None``. A teacher's distribution reaches a student's loss as extra batch keys.

**Log-probabilities** are raw: the model's ``log_softmax`` at temperature 1 before any top-k /
top-p filtering, from ``TrainEngine.logprobs`` and ``top_logprobs`` and for the sampled tokens of
``RolloutEngine.generate``, so that the two agree on the same tokens (RL importance ratios).

**Precision recipes** (``EngineSpec.precision_recipe``) are components of the
``precision_recipes`` registry. ``build_train_engine`` builds the one a spec names and hands it to
the engine in ``EngineRequest.precision_recipe``; the engine calls ``recipe.apply(model)`` once,
on the fresh or loaded model (its own ``torch.nn.Module``) and before it builds its optimizer.
``apply`` swaps layers in place for ones that compute in another precision (FP8, MX, fake
quantization), keeping every parameter and its name, so checkpoints, ``hf_state_dict`` and the
optimizer see the same weights (the fp32 master copy). ``engine.precision`` still sets what the
untouched modules run in. A recipe never changes ``generate``'s decoding weights: it governs the
training forward and backward passes (and ``logprobs``). An engine whose model a recipe cannot
convert correctly (the nanotron engine: tensor-parallel linears) refuses the request with an error
naming ``engine.precision_recipe``; it never trains without the recipe it was given.

**Weights** travel between engines in the Hugging Face Llama layout: an HF checkpoint folder
(``export_hf``) or a mapping of HF parameter names to tensors (``hf_state_dict``).

**Context extensions** (the ``context_extensions`` registry) are what long-context packages give
engines. A ``RopeScaling`` (position interpolation, NTK, YaRN...) is registered under the
``rope_type`` a Hugging Face checkpoint names in ``config.json``'s ``rope_parameters``; an engine
that loads such a checkpoint builds it from the other fields and rotates with its frequencies. A
``ContextParallelAttention`` (ring attention) is what a stage passes as
``EngineRequest.context_parallel`` to shard every training sequence across the process group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec, RolloutSpec, SamplingSpec
from llm_core.types import Sample

if TYPE_CHECKING:  # pragma: no cover
    from llm_core.registry import Registries

Batch = Mapping[str, Any]
LossFn = Callable[..., Any]
Weights = str | Mapping[str, Any]  # an HF checkpoint folder, or HF parameter names -> tensors


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> token ids, special ids, and the chat template pinned in the checkpoint."""

    vocab_size: int
    eos_id: int
    pad_id: int
    bos_id: int | None
    chat_template: str | None  # Jinja source in the Hugging Face convention, or None (a base model)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` with no BOS / EOS added (chat templates add what they need)."""
        ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...

    def apply_chat_template(self, messages: Sequence[Any], add_generation_prompt: bool = False) -> str:
        """Render ``{role, content}`` messages with the pinned template (``llm_core.chat``)."""
        ...

    def stop_ids(self) -> tuple[int, ...]:
        """Tokens that end a generated answer: the template's end of turn, then EOS."""
        ...


@runtime_checkable
class PrecisionRecipe(Protocol):
    """What the ``precision_recipes`` registry builds: it converts an engine's model in place."""

    def apply(self, model: Any) -> list[str]:
        """Swap the layers the recipe's module filter selects; returns their names (module paths)."""
        ...


@runtime_checkable
class TrainEngine(Protocol):
    """A trainable policy: forward / backward with any registered loss, an optimizer, checkpoints."""

    tokenizer: Tokenizer
    step: int  # optimizer steps taken: the learning-rate schedule's position
    is_main: bool  # True in the one process that writes metrics and checkpoints

    def logprobs(self, batch: Batch) -> Any:
        """(B, T) raw log-probabilities of the batch's labels in fp32; 0 where ignored."""
        ...

    def top_logprobs(self, batch: Batch, k: int | None = None) -> tuple[Any, Any]:
        """The model's next-token distribution at every position: ``(values, ids)``, both (B, T, k),
        the ``k`` largest raw log-probabilities (fp32, sorted from the largest) and their token ids;
        ``k = None``: the whole vocabulary (k = vocab size), so that ``values.exp()`` sums to 1.
        Position t is the distribution of the token after ``input_ids[:, t]``, the one that
        ``labels[:, t]`` names, so at a label's position its value equals ``logprobs``. Every
        position is filled, ignored labels or not (padding too): losses mask them. What teachers
        give distillation losses (soft labels, GKD); ``k`` above the vocabulary size means all."""
        ...

    def values(self, batch: Batch) -> Any:
        """(B, T) scalar values from the value head (reward models, critics)."""
        ...

    def forward_backward(self, batch: Batch, loss_fn: LossFn, scale: float = 1.0) -> dict[str, float]:
        """Loss and gradients of one micro-batch, gradients scaled by ``scale`` and accumulated."""
        ...

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step at the scheduled learning rate, zero the gradients; ``step`` grows by one."""
        ...

    def train_step(self, batch: Batch, loss_fn: LossFn, micro_batch_size: int | None = None) -> dict[str, float]:
        """One optimizer step over ``batch`` (split into micro-batches); metrics of the global batch
        (``loss``, ``tokens``, ``lr``, ``grad_norm`` and the loss's own)."""
        ...

    def reference(self) -> TrainEngine:
        """A frozen copy of the current weights (KL penalties, reference log-probs)."""
        ...

    def save(self, uri: str, extra_state: Mapping[str, Any] | None = None) -> None:
        """Everything needed to resume (weights, optimizer, schedule, RNG) plus ``extra_state``."""
        ...

    def load(self, uri: str) -> dict[str, Any]:
        """Restore what ``save`` wrote; returns its ``extra_state`` ({} for a plain checkpoint)."""
        ...

    def export_hf(self, uri: str, summary: Mapping[str, Any] | None = None) -> None:
        """Weights, config and tokenizer as an HF Llama folder; ``summary`` lands in ``llmt.json``."""
        ...

    def hf_state_dict(self) -> dict[str, Any]:
        """The weights under Hugging Face Llama parameter names (for ``update_weights``)."""
        ...


@runtime_checkable
class RolloutEngine(Protocol):
    """Generates samples with per-token raw log-probs, and takes new policy weights."""

    tokenizer: Tokenizer

    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int, sampling: SamplingSpec) -> list[list[Sample]]:
        """``n`` samples per prompt, one group per prompt in prompt order. Stop tokens (the
        tokenizer's ``stop_ids`` and ``sampling.stop_token_ids``) end a sample and are kept in it."""
        ...

    def update_weights(self, weights: Weights) -> None:
        """Take new weights: an HF folder or HF-named tensors. Afterwards ``generate`` follows them."""
        ...

    def sleep(self) -> None:
        """Release what generation holds (KV cache, device memory) while training runs."""
        ...

    def wake(self) -> None:
        """Undo ``sleep``."""
        ...


@runtime_checkable
class RopeScaling(Protocol):
    """A RoPE scaling method, registered as a context extension under its ``rope_type``.

    Built from the fields of ``rope_parameters`` other than ``rope_type`` and ``rope_theta``
    (``factor``, ``original_max_position_embeddings``...), which its config validates.
    """

    dynamic: bool  # True: the frequencies depend on the current sequence length (dynamic NTK)

    def inv_freq(self, head_dim: int, theta: float, max_position_embeddings: int, seq_len: int) -> tuple[Any, float]:
        """(head_dim / 2,) inverse frequencies and the attention factor that multiplies cos and sin,
        for a model's head size, RoPE base and ``max_position_embeddings`` (as transformers'
        ``ROPE_INIT_FUNCTIONS`` read them), at a sequence of ``seq_len`` tokens."""
        ...

    def rope_parameters(self, theta: float, head_dim: int) -> dict[str, Any]:
        """The Hugging Face ``rope_parameters`` (``rope_type``, ``rope_theta``, ...) that reproduce it in
        transformers: what an engine writes into an exported ``config.json``."""
        ...


@runtime_checkable
class ContextParallelAttention(Protocol):
    """Causal attention over sequences sharded across the processes of the default
    ``torch.distributed`` group (ring attention), registered as a context extension.

    Process ``rank`` of ``world`` holds positions ``positions(seq_len, rank, world)`` of every
    sequence (``seq_len`` a multiple of ``multiple(world)``). ``attention(q, k, v)`` takes its
    queries (B, H, T / world, D) and keys / values (B, H_kv, T / world, D), already rotated at those
    positions, and returns its rows (B, H, T / world, D) of attention over the whole sequence.
    """

    def multiple(self, world: int) -> int:
        """Sequence lengths must be a multiple of this (the engine pads up to it)."""
        ...

    def positions(self, seq_len: int, rank: int, world: int) -> Any:
        """The positions (a long tensor of seq_len / world) that process ``rank`` holds."""
        ...

    def attention(self, q: Any, k: Any, v: Any) -> Any: ...


@dataclass(frozen=True)
class EngineRequest:
    """What a stage asks an engine for; the engine's own options come from the registry.

    Exactly one of ``checkpoint`` (an HF-format folder) or ``model`` (a fresh model's shape,
    with ``tokenizer``, a folder holding ``tokenizer.json``) says where the weights come from.
    ``optimizer`` None builds a frozen engine (reference, scorer, rollout-only). ``chat_template``
    pins a template into the engine's tokenizer, and so into every checkpoint it writes.
    ``precision_recipe`` is a built recipe (from ``EngineSpec.precision_recipe``) that the engine
    applies to its model before building the optimizer (see the module docstring).
    """

    checkpoint: str | None = None
    model: ModelShape | None = None
    tokenizer: str | None = None
    max_seq_len: int | None = None  # a fresh model's context length (RoPE tables, KV cache)
    optimizer: OptimizerSpec | None = None
    total_steps: int = 1  # length of the learning-rate schedule
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    value_head: bool = False
    chat_template: str | None = None  # pin this template (a name in llm_core.chat, or Jinja source)
    precision_recipe: PrecisionRecipe | None = None  # applied to the model: recipe.apply(model)
    # Shard each training sequence across the process group with this attention (every process
    # gets the same rows); None: each process trains on whole sequences of its own rows.
    context_parallel: ContextParallelAttention | None = None

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.model is None):
            raise ValueError("an engine request needs exactly one of 'checkpoint' (a folder) or 'model' "
                             "(a shape, with 'tokenizer')")
        if self.model is not None and self.tokenizer is None:
            raise ValueError("a fresh 'model' needs 'tokenizer' (a folder with tokenizer.json)")


@runtime_checkable
class TrainEngineBuilder(Protocol):
    """What the ``engines`` registry builds from an engine's options: a maker of train engines."""

    def train_engine(self, request: EngineRequest) -> TrainEngine: ...


@runtime_checkable
class RolloutEngineBuilder(Protocol):
    """What the ``rollout_engines`` registry builds from an engine's options."""

    def rollout_engine(self, request: EngineRequest) -> RolloutEngine: ...


def build_train_engine(spec: EngineSpec, registries: Registries, **request: Any) -> TrainEngine:
    """The training engine ``spec`` names, for ``EngineRequest(**request)`` on its device and
    precision, with the precision recipe it names built from the registry."""
    builder = spec.build(registries)
    if not isinstance(builder, TrainEngineBuilder):
        raise TypeError(f"engine {spec.name!r} builds no training engine (its factory returned "
                        f"{type(builder).__name__}, which has no train_engine)")
    if spec.precision_recipe is not None:
        recipe = spec.precision_recipe.build(registries)
        if not isinstance(recipe, PrecisionRecipe):
            raise TypeError(f"precision recipe {spec.precision_recipe.name!r} builds "
                            f"{type(recipe).__name__}, which has no apply(model)")
        request.setdefault("precision_recipe", recipe)
    return builder.train_engine(EngineRequest(device=spec.device, precision=spec.precision, **request))


def build_rollout_engine(spec: RolloutSpec, registries: Registries, **request: Any) -> RolloutEngine:
    """The rollout engine ``spec`` names (a frozen policy that generates)."""
    builder = spec.build(registries)
    if not isinstance(builder, RolloutEngineBuilder):
        raise TypeError(f"rollout engine {spec.name!r} builds no rollout engine (its factory returned "
                        f"{type(builder).__name__}, which has no rollout_engine)")
    return builder.rollout_engine(EngineRequest(device=spec.device, precision=spec.precision, **request))
