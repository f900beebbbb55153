"""DoReMi (Xie et al. 2023, arXiv 2305.10429): domain weights by Group DRO over excess loss.

A reference model is trained on a fixed mixture; a proxy model of the same shape is then trained
while, at every step, the domain weights move towards the domains where the proxy's loss most
exceeds the reference's (Algorithm 1). The averaged weights over all steps are the result.
These functions are pure numpy; the stage that trains the two models lives in ``stages/doremi.py``.
"""

from __future__ import annotations

import numpy as np


def domain_excess_loss(proxy_loss: np.ndarray, reference_loss: np.ndarray, domain_ids: np.ndarray,
                       n_domains: int) -> np.ndarray:
    """lambda_t: per domain, the clipped excess loss max(l_proxy - l_ref, 0) averaged over its tokens.

    ``proxy_loss`` and ``reference_loss`` are per-token losses (rows, tokens); ``domain_ids`` gives
    each row's domain. A domain absent from the batch gets 0.
    """
    excess = np.maximum(proxy_loss - reference_loss, 0.0).sum(axis=1)
    tokens = np.full(len(domain_ids), proxy_loss.shape[1], dtype=np.float64)
    total = np.bincount(domain_ids, weights=excess, minlength=n_domains)
    count = np.bincount(domain_ids, weights=tokens, minlength=n_domains)
    return np.divide(total, count, out=np.zeros(n_domains), where=count > 0)


def doremi_update(weights: np.ndarray, excess: np.ndarray, step_size: float = 1.0,
                  smoothing: float = 1e-3) -> np.ndarray:
    """One Group-DRO step: alpha' = alpha * exp(eta * lambda), normalized, mixed with uniform by c."""
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError(f"weights must be a distribution, got {weights}")
    logits = np.log(np.maximum(weights, 1e-300)) + step_size * excess
    updated = np.exp(logits - logits.max())  # exp in log space: stable for large excess losses
    updated /= updated.sum()
    return (1.0 - smoothing) * updated + smoothing / len(weights)
