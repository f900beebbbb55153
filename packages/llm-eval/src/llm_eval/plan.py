"""``llmt plan``: compute-optimal model size and tokens, training FLOPs, and over-training economics.

Training compute is ``C = 6 N D`` FLOPs (N parameters, D tokens: forward and backward, Kaplan et al.
2020); serving costs ``2 N`` FLOPs per generated token. Two ways to pick the optimum:

* ``rule`` (default): about 20 tokens per parameter (Hoffmann et al. 2022, "Chinchilla"), so for a
  budget C, ``N = sqrt(C / 120)`` and ``D = 20 N``;
* ``hoffmann``: their fitted loss ``L(N, D) = E + A / N^alpha + B / D^beta`` (Approach 3: E = 1.69,
  A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28), whose optimum under ``C = 6 N D`` is
  ``N = G (C / 6)^(beta / (alpha + beta))``, ``D = (C / 6) / N``, ``G = (alpha A / (beta B))^(1 / (alpha + beta))``.

With an inference volume (tokens served over the model's life), the cheapest model for a loss is not
the Chinchilla-optimal one: a smaller model trained on more tokens reaches the same fitted loss for
more training compute but less serving compute (Sardana et al. 2023). The planner walks the curve of
equal fitted loss and reports the model with the least training + serving FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
TOKENS_PER_PARAM = 20.0


def fitted_loss(n: float, d: float) -> float:
    return E + A / n**ALPHA + B / d**BETA


def optimal_for_compute(compute: float, law: str = "rule") -> tuple[float, float]:
    """(parameters, tokens) that spend ``compute`` FLOPs best."""
    if law == "rule":
        n = math.sqrt(compute / (6 * TOKENS_PER_PARAM))
        return n, TOKENS_PER_PARAM * n
    n = G * (compute / 6) ** (BETA / (ALPHA + BETA))
    return n, compute / 6 / n


def optimal_tokens(n: float, law: str = "rule") -> float:
    """The compute-optimal training tokens for a model of ``n`` parameters."""
    if law == "rule":
        return TOKENS_PER_PARAM * n
    compute_over_6 = (n / G) ** ((ALPHA + BETA) / BETA)
    return compute_over_6 / n


def tokens_for_loss(n: float, loss: float) -> float | None:
    """Tokens a model of ``n`` parameters needs to reach ``loss`` under the fitted law (None: never)."""
    gap = loss - E - A / n**ALPHA
    return (B / gap) ** (1 / BETA) if gap > 0 else None


@dataclass(frozen=True)
class Option:
    label: str
    params: float
    tokens: float
    inference: float

    @property
    def train_flops(self) -> float:
        return 6 * self.params * self.tokens

    @property
    def serve_flops(self) -> float:
        return 2 * self.params * self.inference

    @property
    def total(self) -> float:
        return self.train_flops + self.serve_flops


def cheapest_for_loss(loss: float, inference: float, points: int = 400) -> Option:
    """The model on the curve of equal fitted loss with the least training + serving FLOPs."""
    best = None
    for k in range(points):
        n = 10 ** (7 + 6 * k / (points - 1))  # 10M .. 10T parameters
        d = tokens_for_loss(n, loss)
        if d is not None:
            option = Option("least total cost", n, d, inference)
            best = option if best is None or option.total < best.total else best
    if best is None:
        raise ValueError(f"no model reaches fitted loss {loss:.3f} (the floor is E = {E})")
    return best


def plan(params: Annotated[Optional[float], typer.Option(help="model parameters, e.g. 8e9")] = None,
         tokens: Annotated[Optional[float], typer.Option(help="training tokens you plan, e.g. 15e12")] = None,
         compute: Annotated[Optional[float], typer.Option(help="training budget in FLOPs, e.g. 1e23")] = None,
         inference_tokens: Annotated[Optional[float], typer.Option(help="tokens served over the model's life")] = None,
         law: Annotated[str, typer.Option(help="rule: ~20 tokens per parameter; hoffmann: the fitted law")] = "rule",
         ) -> None:
    """Chinchilla-optimal tokens, training FLOPs and, with --inference-tokens, over-training economics."""
    if law not in ("rule", "hoffmann"):
        raise typer.BadParameter("--law is 'rule' or 'hoffmann'")
    if params is None and compute is None:
        raise typer.BadParameter("give --params (and optionally --tokens) or --compute")
    for line in plan_lines(params, tokens, compute, inference_tokens, law):
        typer.echo(line)


def plan_lines(params: float | None, tokens: float | None, compute: float | None, inference: float | None,
               law: str) -> list[str]:
    if params is None:
        params, tokens = optimal_for_compute(compute, law)
        lines = [f"budget {compute:.3g} FLOPs -> compute-optimal ({law}): {_n(params)} parameters on "
                 f"{_n(tokens)} tokens"]
    else:
        lines = []
    optimal = optimal_tokens(params, law)
    tokens = tokens or optimal
    lines += [f"model: {_n(params)} parameters, {_n(tokens)} training tokens ({tokens / params:.0f} per parameter)",
              f"compute-optimal tokens ({law}): {_n(optimal)} ({optimal / params:.1f} per parameter); "
              f"this plan trains {tokens / optimal:.1f}x that",
              f"training compute: 6 N D = {6 * params * tokens:.3g} FLOPs",
              f"fitted loss (Hoffmann et al. 2022): {fitted_loss(params, tokens):.4f}"]
    same_compute = optimal_for_compute(6 * params * tokens, "hoffmann")
    lines.append(f"the same compute spent compute-optimally (fitted law): {_n(same_compute[0])} parameters on "
                 f"{_n(same_compute[1])} tokens, fitted loss {fitted_loss(*same_compute):.4f}")
    if inference:
        lines += economics(params, tokens, inference)
    return lines


def economics(params: float, tokens: float, inference: float) -> list[str]:
    """The plan against the Chinchilla-optimal and the cheapest model of the same fitted loss."""
    loss = fitted_loss(params, tokens)
    chinchilla_n = _chinchilla_for_loss(loss)
    options = [Option("this plan", params, tokens, inference),
               Option("Chinchilla-optimal, same loss", chinchilla_n, tokens_for_loss(chinchilla_n, loss), inference),
               cheapest_for_loss(loss, inference)]
    lines = ["", f"over-training economics at fitted loss {loss:.4f}, serving {_n(inference)} tokens:",
             "| model | parameters | tokens | training FLOPs | serving FLOPs | total FLOPs |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {o.label} | {_n(o.params)} | {_n(o.tokens)} | {o.train_flops:.3g} | {o.serve_flops:.3g} | "
              f"{o.total:.3g} |" for o in options]
    return lines


def _chinchilla_for_loss(loss: float) -> float:
    """Parameters of the compute-optimal (fitted law) model that reaches ``loss``: bisection on log N."""
    low, high = 1e6, 1e15
    for _ in range(200):
        mid = math.sqrt(low * high)
        n, d = mid, optimal_tokens(mid, "hoffmann")
        if fitted_loss(n, d) > loss:
            low = mid
        else:
            high = mid
    return high


def _n(x: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"
