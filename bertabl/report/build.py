"""From a run directory (or a matrix) to report files on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertabl.matrix.cells import cell_trials
from bertabl.matrix.plan import FinetuneTrial, Plan
from bertabl.orchestrate.record import Record, status_of
from bertabl.orchestrate.store import RunStore
from bertabl.report.curves import plot_learning_curves
from bertabl.report.layouts import build_report
from bertabl.report.plot import plot_figure5
from bertabl.report.provenance import collect_context
from bertabl.report.render import (
    RENDERERS,
    render_csv,
    render_markdown,
    render_summary,
    render_trials_csv,
)
from bertabl.trial.files import PREDICTIONS

FORMATS = tuple(RENDERERS)


@dataclass(frozen=True)
class Written:
    paths: list[Path]  # every file written
    summary: str  # the tables, notes and rules as Markdown, for the terminal
    headline: str  # the tables' every shown cell as CSV (what report/publish.py logs)


def write_report(
    plan: Plan,
    store: RunStore,
    out_dir: Path,
    formats: list[str],
    ci: bool = False,
    layout: str | None = None,
) -> Written:
    """Render the run's results in each format to `out_dir/<matrix name>.<ext>`.

    Markdown comes with `<name>.trials.csv` (every trial behind every cell) and
    `<name>.curves.png` (learning curves, from the records' histories); Figure 5 reports
    with `<name>.png` and `<name>.pdf`.
    """
    records = store.records()
    report = build_report(plan, records, layout, ci, predictions_of(store))
    ctx = collect_context(plan, records, store.manifest()["source"])
    out_dir.mkdir(parents=True, exist_ok=True)
    name = plan.matrix.name
    written = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        if fmt == "md":
            trials = out_dir / f"{name}.trials.csv"
            trials.write_text(render_trials_csv(trial_rows(plan, records)), encoding="utf-8")
            curves = plot_learning_curves(plan, records, out_dir / f"{name}.curves.png")
            text = render_markdown(report, ctx, trials.name, curves and curves.name)
            path.write_text(text, encoding="utf-8")
            written += [path, trials, *([curves] if curves else [])]
        else:
            path.write_text(RENDERERS[fmt](report, ctx), encoding="utf-8")
            written.append(path)
    if report.figure is not None:
        written += plot_figure5(report.figure, out_dir / name)
    return Written(written, render_summary(report), render_csv(report, ctx))


def predictions_of(store: RunStore):
    """A loader of a trial's predictions on a split (None when the trial kept none)."""

    def load(trial_id: str, split: str) -> list[dict[str, Any]] | None:
        path = store.trial_dir(trial_id) / PREDICTIONS / f"{split}.jsonl"
        if not path.is_file():
            return None
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    return load


def trial_rows(plan: Plan, records: dict[str, Record]) -> list[dict[str, Any]]:
    """One CSV row per planned trial: what it is, its status and score, its time."""
    owners: dict[str, list[str]] = {}
    for row in plan.rows:
        for task in plan.matrix.finetune.tasks:
            for trial in cell_trials(plan, row, task):
                owners.setdefault(trial.id, []).append(row.name)
    rows = []
    for trial in [*plan.pretrain, *plan.finetune]:
        record = records.get(trial.id)
        status = status_of(record)
        metrics = record.metrics if record is not None else {}
        if isinstance(trial, FinetuneTrial):
            metric_for = plan.matrix.metric_for
            if trial.multitask:  # a shared encoder: one score per task, rows via its views
                tasks = trial.multitask.tasks
                score = " ".join(
                    f"{t}={metrics.get(f'{t}/dev_{metric_for(t)}', '')}" for t in tasks
                )
                views = [v.id for v in plan.views if v.view_of == trial.id]
                names = [n for v in views for n in owners.get(v, [])]
            else:
                score = metrics.get(f"dev_{metric_for(trial.task)}", "")
                names = owners.get(trial.id, [])
            extra = {
                "stage": "finetune",
                "task": trial.task,
                "grid_point": " ".join(f"{k}={v:g}" for k, v in trial.grid_point),
                "restart": trial.restart,
                "score": score,
            }
        else:
            names = [r.name for r in plan.rows if r.pretrain_id == trial.id]
            extra = {"stage": "pretrain", "score": metrics.get("heldout_perplexity", "")}
        rows.append(
            {
                "trial": trial.id,
                "row": " ".join(dict.fromkeys(names)),
                "status": status,
                "seconds": round(record.seconds, 3) if record is not None and record.done else "",
                "tokens_planned": trial.tokens,
                **extra,
            }
        )
    return rows
