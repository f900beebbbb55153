"""PNG output of the package's figures (matplotlib loads only in the functions that draw)."""

from __future__ import annotations

from llm_core.plots import save_figure


def heatmap(values: list[list[float]], rows: list[str], columns: list[str], out_uri: str, *, title: str,
            xlabel: str, ylabel: str) -> bool:
    """A grid of accuracies in [0, 1] (rows x columns) with each cell's value written in it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2, 0.6 * len(rows) + 1.6))
    image = ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04)
    save_figure(fig, out_uri)
    return True
