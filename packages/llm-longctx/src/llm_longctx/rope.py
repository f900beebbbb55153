"""RoPE scalings: position interpolation, NTK-aware, dynamic NTK, YaRN and Llama 3's band scaling.

Each is a context extension (``llm_core.engines.RopeScaling``) registered under the ``rope_type``
that Hugging Face checkpoints use, so that an engine loading a ``config.json`` with
``rope_parameters = {"rope_type": "yarn", "factor": 8, ...}`` finds it by that name. The
frequencies equal transformers' ``ROPE_INIT_FUNCTIONS`` for the same parameters (tested, <= 1e-6);
they are computed in float64 here. NTK-aware scaling is a change of base, which transformers
writes as plain RoPE with a larger ``rope_theta``: that is how it is exported.

RoPE rotates the pair i of a head at position m by the angle m * inv_freq[i], with
inv_freq[i] = theta ** (-2i / d). The wavelength 2 pi / inv_freq[i] runs from 2 pi (i = 0) to
about theta; scaling methods stretch the long wavelengths so that positions beyond the trained
length land on angles the model has seen.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field, model_validator

from llm_core.config import Config


def plain_inv_freq(head_dim: int, theta: float) -> Any:
    """theta ** (-2i / d) for i < d / 2, in float64 (RoPE, Su et al. 2021)."""
    import torch

    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


class ScaledRope:
    """What every scaling shares: its config, and how it is written into ``rope_parameters``."""

    rope_type: ClassVar[str]
    dynamic: ClassVar[bool] = False

    def __init__(self, config: Any):
        self.config = config

    def rope_parameters(self, theta: float, head_dim: int) -> dict[str, Any]:
        return {"rope_type": self.rope_type, "rope_theta": theta, **self.config.model_dump(exclude_none=True)}


# --- position interpolation ------------------------------------------------------------------


class LinearConfig(Config):
    """Position Interpolation (Chen et al. 2023): every position divided by ``factor``."""

    factor: float = Field(ge=1, description="new context length / trained context length")


class LinearScaling(ScaledRope):
    rope_type = "linear"

    def inv_freq(self, head_dim: int, theta: float, max_position_embeddings: int, seq_len: int):
        # Dividing the positions or the frequencies by the factor gives the same angles.
        return plain_inv_freq(head_dim, theta) / self.config.factor, 1.0


# --- NTK-aware and dynamic NTK ---------------------------------------------------------------


class NtkConfig(Config):
    """NTK-aware scaling (bloc97, 2023): the base grows to theta * factor ** (d / (d - 2)), which
    leaves the fastest pair untouched and interpolates the slowest by ``factor``."""

    factor: float = Field(ge=1, description="new context length / trained context length")


def ntk_theta(theta: float, head_dim: int, factor: float) -> float:
    return theta * factor ** (head_dim / (head_dim - 2))


class NtkScaling(ScaledRope):
    rope_type = "ntk"

    def inv_freq(self, head_dim: int, theta: float, max_position_embeddings: int, seq_len: int):
        return plain_inv_freq(head_dim, ntk_theta(theta, head_dim, self.config.factor)), 1.0

    def rope_parameters(self, theta: float, head_dim: int) -> dict[str, Any]:
        # transformers has no static NTK type: it is plain RoPE on the larger base.
        return {"rope_type": "default", "rope_theta": ntk_theta(theta, head_dim, self.config.factor)}


class DynamicConfig(Config):
    """Dynamic NTK (emozilla, 2023): no change up to ``max_position_embeddings`` (the trained length,
    as transformers reads it); beyond, the base follows the sequence length L:
    theta * (factor * L / max_position_embeddings - (factor - 1)) ** (d / (d - 2))."""

    factor: float = Field(ge=1, description="how fast the base grows with the length")


class DynamicNtkScaling(ScaledRope):
    rope_type = "dynamic"
    dynamic = True

    def inv_freq(self, head_dim: int, theta: float, max_position_embeddings: int, seq_len: int):
        length = max(seq_len, max_position_embeddings)
        growth = self.config.factor * length / max_position_embeddings - (self.config.factor - 1)
        return plain_inv_freq(head_dim, theta * growth ** (head_dim / (head_dim - 2))), 1.0


# --- YaRN ------------------------------------------------------------------------------------


class YarnConfig(Config):
    """YaRN (Peng et al. 2023, eq. 15-19 and section 3.4): pairs that turn fewer than ``beta_slow``
    times over the trained length are interpolated by ``factor``, pairs that turn more than
    ``beta_fast`` times are left alone, with a linear ramp between; the logits are sharpened by
    the attention temperature 0.1 ln(factor) + 1 (applied to cos and sin, so squared in q . k)."""

    factor: float = Field(ge=1, description="new context length / original_max_position_embeddings")
    original_max_position_embeddings: int = Field(ge=1, description="the context length trained before")
    beta_fast: float = Field(32.0, gt=0, description="rotations above which a pair is not interpolated")
    beta_slow: float = Field(1.0, gt=0, description="rotations below which a pair is fully interpolated")
    attention_factor: float | None = Field(None, gt=0, description="override of 0.1 ln(factor) + 1")
    mscale: float | None = Field(None, description="DeepSeek's variant: attention factor mscale / mscale_all_dim")
    mscale_all_dim: float | None = None
    truncate: bool = Field(True, description="round the ramp's ends to whole dimensions (the paper's code)")

    @model_validator(mode="after")
    def _fast_above_slow(self) -> YarnConfig:
        if self.beta_fast < self.beta_slow:
            raise ValueError(f"beta_fast ({self.beta_fast}) must be at least beta_slow ({self.beta_slow})")
        return self


def yarn_temperature(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


class YarnScaling(ScaledRope):
    rope_type = "yarn"

    def attention_factor(self) -> float:
        c = self.config
        if c.attention_factor is not None:
            return c.attention_factor
        if c.mscale and c.mscale_all_dim:
            return yarn_temperature(c.factor, c.mscale) / yarn_temperature(c.factor, c.mscale_all_dim)
        return yarn_temperature(c.factor)

    def inv_freq(self, head_dim: int, theta: float, max_position_embeddings: int, seq_len: int):
        import torch

        c = self.config
        extrapolated = plain_inv_freq(head_dim, theta)
        interpolated = extrapolated / c.factor
        low, high = self.ramp_ends(head_dim, theta)
        if low == high:
            high += 0.001  # a one-dimension ramp would divide by zero
        ramp = ((torch.arange(head_dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        # ramp 0: fast pairs (many turns), kept; ramp 1: slow pairs, interpolated.
        return interpolated * ramp + extrapolated * (1 - ramp), self.attention_factor()

    def ramp_ends(self, head_dim: int, theta: float) -> tuple[float, float]:
        """The pair indices where a pair turns ``beta_fast`` and ``beta_slow`` times over the trained length."""
        c = self.config

        def pair_turning(turns: float) -> float:
            wavelengths = c.original_max_position_embeddings / (turns * 2 * math.pi)
            return head_dim * math.log(wavelengths) / (2 * math.log(theta))

        low, high = pair_turning(c.beta_fast), pair_turning(c.beta_slow)
        if c.truncate:
            low, high = math.floor(low), math.ceil(high)
        return max(low, 0), min(high, head_dim - 1)


# --- Llama 3 ---------------------------------------------------------------------------------


class Llama3Config(Config):
    """Llama 3.1's band scaling (Meta 2024): wavelengths shorter than
    original / high_freq_factor are kept, longer than original / low_freq_factor divided by
    ``factor``, and the band between blends the two smoothly."""

    factor: float = Field(ge=1, description="interpolation of the low-frequency band")
    original_max_position_embeddings: int = Field(ge=1, description="the context length trained before")
    low_freq_factor: float = Field(1.0, gt=0)
    high_freq_factor: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _bands_ordered(self) -> Llama3Config:
        if self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(f"high_freq_factor ({self.high_freq_factor}) must exceed low_freq_factor "
                             f"({self.low_freq_factor})")
        return self


class Llama3Scaling(ScaledRope):
    rope_type = "llama3"

    def inv_freq(self, head_dim: int, theta: float, max_position_embeddings: int, seq_len: int):
        import torch

        c = self.config
        inv_freq = plain_inv_freq(head_dim, theta)
        wavelength = 2 * math.pi / inv_freq
        # 0 in the low-frequency band (long wavelengths), 1 in the high one, linear in 1 / wavelength between.
        smooth = (c.original_max_position_embeddings / wavelength - c.low_freq_factor) / (
            c.high_freq_factor - c.low_freq_factor)
        blended = (1 - smooth) * inv_freq / c.factor + smooth * inv_freq
        low_band = wavelength > c.original_max_position_embeddings / c.low_freq_factor
        high_band = wavelength < c.original_max_position_embeddings / c.high_freq_factor
        return torch.where(low_band, inv_freq / c.factor, torch.where(high_band, inv_freq, blended)), 1.0

