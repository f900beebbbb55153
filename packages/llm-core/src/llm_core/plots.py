"""PNG curves of a stage's metrics (loss, reward...) over its steps. matplotlib loads only here.

Drawing is a convenience: where matplotlib is not installed the stage logs that and goes on.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from llm_core.artifacts import atomic_open

log = logging.getLogger("llmt")
# The curves worth a panel, in order of interest; the first present ones are drawn.
CURVE_KEYS = ("loss", "reward_mean", "eval_pass_at_1", "pass_rate", "kl", "entropy", "accuracy", "margin",
              "grad_norm", "lr")


def plot_training_curves(records: Sequence[dict[str, Any]], out_uri: str, *, title: str = "",
                         keys: Sequence[str] = CURVE_KEYS, max_panels: int = 4) -> bool:
    """One panel per metric (the first ``max_panels`` of ``keys`` that the records hold), against
    the step. Returns whether a PNG was written."""
    by_step: dict[int, dict[str, Any]] = {}
    for record in records:
        if isinstance(record.get("step"), int):
            by_step.setdefault(record["step"], {}).update(record)
    steps = sorted(by_step)
    present = [k for k in keys if any(isinstance(by_step[s].get(k), (int, float)) for s in steps)][:max_panels]
    if len(steps) < 2 or not present:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("curves not drawn: matplotlib is not installed (pip install matplotlib)")
        return False
    fig, axes = plt.subplots(len(present), 1, figsize=(7, 2.2 * len(present)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], present, strict=True):
        points = [(s, by_step[s][key]) for s in steps if isinstance(by_step[s].get(key), (int, float))]
        ax.plot(*zip(*points, strict=True), marker="." if len(points) < 40 else None)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    save_figure(fig, out_uri, dpi=90)
    return True


def save_figure(fig: Any, out_uri: str, *, dpi: int = 100) -> None:
    """Write a matplotlib figure as a PNG to any fsspec URI, atomically, and close it
    (rendered to memory first: a half-written PNG never appears under the final name)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    with atomic_open(out_uri, "wb") as handle:
        handle.write(buffer.getvalue())
