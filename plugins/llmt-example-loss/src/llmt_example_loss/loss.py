"""Cross-entropy plus PaLM's z-loss (arXiv 2204.02311, section 5): ``z_coef * log(Z)^2``.

The z-loss keeps the softmax normaliser near 1, which stabilises large-scale training.
"""

from __future__ import annotations

from functools import partial
from typing import Any

IGNORE_INDEX = -100


def z_loss_cross_entropy(logits: Any, labels: Any, *, z_coef: float = 1e-4) -> Any:
    """Mean cross-entropy plus ``z_coef`` times the mean squared log-partition, over unmasked tokens."""
    import torch
    import torch.nn.functional as F

    flat = logits.reshape(-1, logits.shape[-1]).float()
    target = labels.reshape(-1)
    mask = target != IGNORE_INDEX
    ce = F.cross_entropy(flat, target, ignore_index=IGNORE_INDEX)
    log_z = torch.logsumexp(flat[mask], dim=-1)
    return ce + z_coef * (log_z**2).mean()


def make_z_loss(config: Any) -> Any:
    """The registry calls this with the validated ``ZLossConfig``."""
    return partial(z_loss_cross_entropy, z_coef=config.z_coef)
