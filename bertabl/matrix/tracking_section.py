"""The [tracking] section: where each trial's curves go besides its record (TensorBoard event
files, Weights & Biases, MLflow). Not part of trial ids: tracking never changes a result."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bertabl.trial.strict import Strict


class WandbTracking(Strict):
    """[tracking] wandb = { project = "...", entity = "...", mode = "offline" }"""

    project: str = Field(min_length=1, description="the W&B project the runs go to")
    entity: str | None = Field(None, description="the W&B team or user [default: yours]")
    mode: Literal["offline", "online"] = Field(
        "offline",
        description="offline: runs are written under <run dir>/wandb/ with no network (upload "
        "them later with `wandb sync <run dir>/wandb/offline-run-*`, e.g. from a login node); "
        "online: streamed to W&B as they run (needs `wandb login` or WANDB_API_KEY)",
    )


class MlflowTracking(Strict):
    """[tracking] mlflow = { tracking_uri = "sqlite:///...", experiment = "..." }"""

    tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="an MLflow tracking URI: sqlite:///path.db, a server (http://...), "
        "databricks [default: sqlite:///<run dir>/mlflow.db]",
    )
    experiment: str | None = Field(
        None, min_length=1, description="the MLflow experiment [default: the matrix name]"
    )


class TrackingSection(Strict):
    """Experiment tracking: each trial's curves (pre-training loss / lr / tokens per second by
    step, fine-tuning dev metrics by epoch) as one run per trial, named by its row, task, grid
    point and restart (orchestrate/tracking.py). Not part of trial ids."""

    tensorboard: bool = Field(
        True,
        description="write TensorBoard event files to <run dir>/tensorboard (offline; view with "
        "`tensorboard --logdir <run dir>/tensorboard`); on by default: bench/tracking.py "
        "measured milliseconds per reported result, in the driver",
    )
    wandb: WandbTracking | None = Field(
        None,
        description="also log to Weights & Biases, through Ray Tune's WandbLoggerCallback: one "
        "run per trial, with its resolved config, plus a `report` run with the report's tables "
        "(needs the wandb extra: pip install 'bertabl[wandb]')",
    )
    mlflow: MlflowTracking | None = Field(
        None,
        description="also log to MLflow, through Ray Tune's MLflowLoggerCallback: one run per "
        "trial, with its resolved config as params, plus a `report` run with the report's "
        "files as artifacts (needs the mlflow extra: pip install 'bertabl[mlflow]')",
    )
