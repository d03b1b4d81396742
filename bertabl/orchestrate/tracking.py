"""Experiment tracking: each trial's curves in TensorBoard, one run per trial, named by what it
is (`pretrain/<rows>`, `finetune/<rows>/<task>/<grid point>/restart=<k>`).

The driver's Tune callback (tune_events.TrackingEvents) feeds a `Tracker` the results trial
bodies report. Written here rather than with Ray Tune's TBXLoggerCallback because that one
names each run by Tune's trial (our id alone), plots against Tune's iteration counter (which
starts again at 1 when a trial resumes from its checkpoint) and logs every key of every result
(pids, timestamps, the config); here pre-training plots against the optimizer step and
fine-tuning against the epoch, so a resumed trial continues its own curve (the attempt that
died is cut at the step it resumes from: tensorboardX's purge_step), and a run's name says
which row, task, grid point and restart it is. The writer itself is tensorboardX's (a Ray Tune
dependency, no TensorFlow), so it works offline.

The same names, steps and curves go to Weights & Biases and MLflow when the matrix asks
(orchestrate/tracking_services.py); the settings they share with the report's publishing
(report/publish.py) are here: run ids, the MLflow store and experiment, the extras' imports.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from bertabl.errors import UserError
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.plan import FinetuneTrial, Plan
from bertabl.matrix.trials import TestTrial

TENSORBOARD_DIR = "tensorboard"  # inside the run directory
# What a trial body reports that is a position or a clock, not a curve.
NOT_CURVES = {"step", "epoch", "seconds"}


def run_names(plan: Plan) -> dict[str, str]:
    """Trial id -> its tracking run's name (a relative path: TensorBoard groups by folder).

    Test-split scorings have no curves and no run. A name two trials would share (it cannot
    happen for distinct grid points and restarts) gets the trial id appended."""
    owners: dict[str, list[str]] = {}
    for row in plan.rows:
        for task in plan.matrix.finetune.tasks:
            for trial in cell_trials(plan, row, task):
                trial_id = trial.view_of or trial.id  # a multi-task view: its shared trial
                owners.setdefault(trial_id, []).append(row.name)
    names: dict[str, str] = {}
    for trial in [*plan.pretrain, *plan.finetune]:
        if isinstance(trial, TestTrial):
            continue
        if isinstance(trial, FinetuneTrial):
            rows = "+".join(dict.fromkeys(owners.get(trial.id, []))) or "unreported"
            task = "+".join(trial.multitask.tasks) if trial.multitask else trial.task
            point = ",".join(f"{k}={v:g}" for k, v in trial.grid_point)
            name = f"finetune/{_safe(rows)}/{_safe(task)}/{point}/restart={trial.restart}"
        else:
            rows = "+".join(r.name for r in plan.rows if r.pretrain_id == trial.id)
            name = f"pretrain/{_safe(rows or trial.id)}"
        if name in names.values():
            name += f"-{trial.id}"
        names[trial.id] = name
    return names


def _safe(part: str) -> str:
    """A folder name: no path separators or spaces (row and task names are already plain)."""
    return re.sub(r"[^\w.=+,-]", "_", part)


def curve_point(metrics: dict[str, Any]) -> tuple[int, dict[str, float]] | None:
    """(x, scalars) of one reported result: pre-training's optimizer step or fine-tuning's
    epoch, and its finite numbers (nested dicts are not curves); None without a position."""
    x = metrics.get("step", metrics.get("epoch"))
    if not isinstance(x, int):
        return None
    scalars = {
        k: float(v)
        for k, v in metrics.items()
        if k not in NOT_CURVES
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
    }
    return x, scalars


class Tracker:
    """Writes each trial's results as a TensorBoard run under `root`; driver-side only."""

    def __init__(self, plan: Plan, root: Path):
        self.root = Path(root)
        self.names = run_names(plan)
        self.writers: dict[str, Any] = {}

    def result(self, trial_id: str, metrics: dict[str, Any]) -> None:
        name = self.names.get(trial_id)
        point = curve_point(metrics)
        if name is None or point is None:
            return
        x, scalars = point
        writer = self.writers.get(trial_id)
        if writer is None:  # the first result of this attempt: drop a dead attempt's later points
            from tensorboardX import SummaryWriter

            # tensorboardX names event files by the second and the host: a resumed attempt
            # starting in the same second would overwrite the dead attempt's file. TensorBoard
            # reads a folder's files in name order, so the suffix also keeps them in time order.
            unique = f".{time.time_ns()}.{os.getpid()}"
            writer = SummaryWriter(
                str(self.root / name), purge_step=x, flush_secs=30, filename_suffix=unique
            )
            writer.add_text("trial", f"{trial_id}: {name}", global_step=x)
            self.writers[trial_id] = writer
        for key, value in scalars.items():
            writer.add_scalar(key, value, global_step=x)

    def end(self, trial_id: str) -> None:
        writer = self.writers.pop(trial_id, None)
        if writer is not None:
            writer.close()

    def close(self) -> None:
        for trial_id in list(self.writers):
            self.end(trial_id)


def require(module: str):
    """Import a tracking service's package, or one line naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"[tracking] {module} needs the {module} package: pip install -c constraints.txt "
            f"'bertabl[{module}]' (or leave tracking.{module} out of the matrix)"
        ) from None


def wandb_run_id(run_dir: Path, name: str) -> str:
    """A W&B run id for `name` (a trial id, "report") in this run directory: the same for every
    attempt (a resumed trial continues its run), another for another run directory."""
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def mlflow_uri(plan: Plan, run_dir: Path) -> str:
    settings = plan.matrix.tracking.mlflow
    uri = settings.tracking_uri if settings else None
    return uri or f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def mlflow_experiment(plan: Plan) -> str:
    settings = plan.matrix.tracking.mlflow
    return (settings and settings.experiment) or plan.matrix.name


def mlflow_experiment_id(client, plan: Plan, run_dir: Path) -> str:
    """The id of the matrix's MLflow experiment, created if new. With a SQLite store its
    artifacts go beside the database file (MLflow's default is ./mlruns in whatever folder
    the command ran from); a server keeps its own."""
    name = mlflow_experiment(plan)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    uri = mlflow_uri(plan, run_dir)
    artifacts = None
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///")).resolve()
        artifacts = (database.parent / "mlflow-artifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


def tracking_lines(plan: Plan, run_dir: Path) -> list[str]:
    """Where a run's tracking logs go, for `bertabl run` to print (none when tracking is off)."""
    tracking, lines = plan.matrix.tracking, []
    if tracking.tensorboard:
        folder = Path(run_dir) / TENSORBOARD_DIR
        lines.append(f"TensorBoard: {folder} (tensorboard --logdir {folder})")
    if tracking.wandb is not None:
        where = f"{tracking.wandb.entity}/" if tracking.wandb.entity else ""
        if tracking.wandb.mode == "offline":
            folder = Path(run_dir) / "wandb"
            lines.append(
                f"W&B (offline): {folder}/offline-run-* (upload with `wandb sync "
                f"{folder}/offline-run-*` to project {where}{tracking.wandb.project})"
            )
        else:
            lines.append(f"W&B: project {where}{tracking.wandb.project}, group {plan.matrix.name}")
    if tracking.mlflow is not None:
        uri = mlflow_uri(plan, run_dir)
        lines.append(
            f"MLflow: experiment {mlflow_experiment(plan)} at {uri} (mlflow ui --backend-store-uri "
            f"{uri})"
        )
    return lines
