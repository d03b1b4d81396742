"""Figure 5 as a plot: our accuracy by pre-training steps beside the paper's plotted curve.

Two panels, because our steps (tiny scale) and the paper's (up to 1M) share no axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_figure5(figure: dict[str, Any], stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.pdf; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    fig, (ours, theirs) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for label, points in figure["ours"].items():
        if points:
            steps, means, stds = zip(*points, strict=True)
            ours.errorbar(steps, means, yerr=stds, marker="o", capsize=3, label=label)
    ours.set(title="ours", xlabel="pre-training steps", ylabel=f"{figure['metric']} (%)")
    for label, points in figure["paper"].items():
        steps, values = zip(*points, strict=True)
        theirs.plot(steps, values, marker="o", label=f"BERT-Base {label}")
    theirs.set(
        title="paper (read from its figure)",
        xlabel="pre-training steps (thousands)",
        ylabel="MNLI-m dev accuracy (%)",
    )
    for ax in (ours, theirs):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    # No timestamps in the files: the same results give the same bytes.
    fig.savefig(paths[0], dpi=120, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return paths
