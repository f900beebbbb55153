"""Per-stage reports: ``report.json`` (counts, histograms, chart data) in the stage folder, and the PNG
charts drawn from them on request."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from llm_core.artifacts import atomic_open, write_json


@dataclass(frozen=True)
class Chart:
    """One panel: ``bar`` of labelled counts, or ``hist`` of a size -> count table (log scale)."""

    title: str
    kind: Literal["bar", "hist"]
    data: Mapping[Any, float]
    xlabel: str = ""
    ylabel: str = "count"
    options: dict[str, Any] = field(default_factory=dict)


def size_histogram(sizes: Iterable[int]) -> dict[int, int]:
    """size -> how many groups have it, sorted by size."""
    return dict(sorted(Counter(int(s) for s in sizes).items()))


def value_histogram(values: np.ndarray, bins: int = 20, lo: float = 0.0, hi: float = 1.0) -> dict[str, int]:
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins, range=(lo, hi))
    return {f"{edges[i]:.2f}": int(c) for i, c in enumerate(counts)}


def write_report(report_uri: str, report: dict[str, Any], charts: list[Chart]) -> None:
    """Write ``report.json``: the report and, under ``charts``, the data of its chart panels.

    Nothing is drawn here (matplotlib costs seconds per process); the ``dedup_charts`` stage, or
    ``draw_charts``, turns the panels into a PNG when asked.
    """
    panels = [{"title": c.title, "kind": c.kind, "labels": [str(k) for k in c.data],
               "values": list(c.data.values()), "xlabel": c.xlabel, "ylabel": c.ylabel} for c in charts]
    write_json(report_uri, {**report, "charts": panels})


def draw_charts(panels: list[dict[str, Any]], chart_uri: str) -> None:
    """One PNG with a panel per chart of a report (matplotlib, Agg backend; extra ``charts``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        labels, values = panel["labels"], panel["values"]
        ax.bar(range(len(values)), values, color="tab:blue" if panel["kind"] == "bar" else "tab:orange")
        step = max(1, len(labels) // 12)  # keep the tick labels readable
        ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right", fontsize=8)
        if panel["kind"] == "hist" and any(v > 0 for v in values):
            ax.set_yscale("log")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
    fig.tight_layout()
    with atomic_open(chart_uri, "wb") as handle:
        fig.savefig(handle, format="png", dpi=90)
    plt.close(fig)


def snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."
