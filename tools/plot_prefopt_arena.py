"""Bar chart of the prefopt arena: held-out greedy pass@1 of every arm with its 95% interval.

    uv run python tools/plot_prefopt_arena.py runs/prefopt-arena [--out packages/llm-prefopt/docs/arena.png]

Reads ``<run>/eval/results.json`` (written by the ``rlvr_eval`` stage of
``integration/recipes/prefopt-arena.toml``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("packages/llm-prefopt/docs/arena.png"))
    args = parser.parse_args()
    rows = json.loads((args.run / "eval" / "results.json").read_text())["rows"]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    values = [r["pass_at_1"] for r in rows]
    errors = [[v - r["ci_low"] for v, r in zip(values, rows, strict=True)],
              [r["ci_high"] - v for v, r in zip(values, rows, strict=True)]]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colors = ["#999999"] + ["#4477aa"] * (len(rows) - 1)
    ax.bar(names, values, yerr=errors, capsize=4, color=colors)
    ax.axhline(values[0], color="#999999", linestyle="--", linewidth=1)
    ax.set_ylabel("held-out pass@1 (greedy)")
    ax.set_title(f"prefopt arena: {rows[0]['n']} held-out problems, 95% Wilson intervals")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
