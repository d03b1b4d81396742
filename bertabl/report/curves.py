"""Learning curves: every report's PNG, from the histories the trial records already hold.

Left panel: each pre-training trial's loss by optimizer step (its logged window means). One
panel per fine-tuning task: each row's dev metric by epoch, the mean over the restarts of the
grid point selection picked for that cell (the curve behind the cell's number).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bertabl.matrix.cells import cell_trials
from bertabl.matrix.plan import Plan
from bertabl.orchestrate.record import Record
from bertabl.selection import select_model

Curve = list[tuple[int, float]]


def pretrain_curves(plan: Plan, records: dict[str, Record]) -> dict[str, Curve]:
    """Row label(s) -> [(step, loss)] of each finished or running pre-training trial."""
    curves = {}
    for trial in plan.pretrain:
        record = records.get(trial.id)
        history = record.history if record is not None else []
        points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
        if points:
            rows = [r.label for r in plan.rows if r.pretrain_id == trial.id]
            curves[", ".join(dict.fromkeys(rows)) or trial.id] = points
    return curves


def finetune_curves(plan: Plan, records: dict[str, Record]) -> dict[str, dict[str, Curve]]:
    """Task -> row label -> [(epoch, mean dev metric over the selected grid point's
    restarts)]; cells without a selected point are left out."""
    tasks: dict[str, dict[str, Curve]] = {}
    metric_for = plan.matrix.metric_for
    for task in plan.matrix.finetune.tasks:
        metric = f"dev_{metric_for(task)}"
        for row in plan.rows:
            selected = select_model(cell_trials(plan, row, task), records, metric_for(task))
            by_epoch: dict[int, list[float]] = {}
            for trial_id in selected.trials:
                record = records.get(trial_id)
                for entry in record.history if record is not None else []:
                    if isinstance(entry.get(metric), int | float) and "epoch" in entry:
                        by_epoch.setdefault(entry["epoch"], []).append(entry[metric])
            if by_epoch:
                points = [(e, statistics.fmean(v)) for e, v in sorted(by_epoch.items())]
                tasks.setdefault(task, {})[row.label] = points
    return tasks


def plot_learning_curves(plan: Plan, records: dict[str, Record], path: Path):
    """Write the learning curves PNG to `path`; None (no file) when no record has a history."""
    pretrain = pretrain_curves(plan, records)
    finetune = finetune_curves(plan, records)
    if not pretrain and not finetune:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    panels = (1 if pretrain else 0) + len(finetune)
    fig, axes = plt.subplots(
        1, panels, figsize=(4.5 * panels, 3.6), constrained_layout=True, squeeze=False
    )
    axes = list(axes[0])
    if pretrain:
        ax = axes.pop(0)
        for label, points in pretrain.items():
            ax.plot(*zip(*points, strict=True), label=label)
        ax.set(title="pre-training", xlabel="step", ylabel="training loss")
    for (task, rows), ax in zip(finetune.items(), axes, strict=True):
        for label, points in rows.items():
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
        metric = plan.matrix.metric_for(task)
        ax.set(title=f"{task} (dev)", xlabel="epoch", ylabel=metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in fig.axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})  # same results, same bytes
    plt.close(fig)
    return path
