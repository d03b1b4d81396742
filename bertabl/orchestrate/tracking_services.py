"""Weights & Biases and MLflow, through Ray Tune's own logger callbacks (WandbLoggerCallback,
MLflowLoggerCallback), named and stepped as the TensorBoard runs are (orchestrate/tracking.py).

Ray's callbacks log every key of every result against Tune's iteration counter and name each run
by Tune's trial, which is bertabl's id alone. Subclassed here so that, as in TensorBoard, a run
is named `pretrain/<rows>` or `finetune/<rows>/<task>/<grid point>/restart=<k>`, carries the
trial's resolved config (its id, stage and every setting), and logs only the trial's curves
against pre-training's optimizer step or fine-tuning's epoch (Tune's counter starts again at 1
when a trial resumes from its checkpoint). A resumed trial (a later `bertabl resume`) continues
its run: W&B's run id and MLflow's run (found by its tags) follow from the run directory and
the trial id. Test-split scorings have no curves and no run.

Its own module because it imports Ray Tune and the services, which only a run that tracks to
them pays for; what the report logs (report/publish.py) shares the settings below.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.mlflow import MLflowLoggerCallback

# Ray's W&B logging actor and its queue's item kinds: private to Ray, but its callback's only
# extension point for how a run logs (wandb itself is imported there only if installed).
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor
from ray.tune.logger import LoggerCallback
from ray.tune.utils import flatten_dict

from bertabl.errors import UserError
from bertabl.matrix.plan import Plan
from bertabl.orchestrate.params import trial_params
from bertabl.orchestrate.tracking import (
    curve_point,
    mlflow_experiment,
    mlflow_experiment_id,
    mlflow_uri,
    require,
    run_names,
    wandb_run_id,
)
from bertabl.orchestrate.tune_events import TUNE_KEYS

WANDB_DIR = "wandb"  # inside the run directory: wandb writes <dir>/wandb/offline-run-*


def preflight(plan: Plan, run_dir: Path) -> None:
    """Before anything runs: the services' packages are there, W&B online has a key, and the
    MLflow store opens (an unreachable or unsupported tracking URI is one line, not a traceback
    after an hour of training)."""
    tracking = plan.matrix.tracking
    if tracking.wandb is not None:
        wandb = require("wandb")
        if tracking.wandb.mode == "online" and not wandb.login(prompt=False):
            raise UserError(
                "tracking.wandb.mode = 'online' needs a W&B API key: run `wandb login` or set "
                "WANDB_API_KEY; or use mode = 'offline' and `wandb sync` the runs later"
            )
    if tracking.mlflow is not None:
        mlflow = require("mlflow")
        # its INFO lines (creating the database's tables...) would interleave with the progress
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        uri = mlflow_uri(plan, run_dir)
        try:
            mlflow_experiment_id(mlflow.MlflowClient(tracking_uri=uri), plan, run_dir)
        except Exception as err:  # noqa: BLE001 - MLflow raises many kinds for a bad store
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"tracking.mlflow.tracking_uri = {uri!r}: MLflow cannot use it ({reason}); "
                "use sqlite:///<path>.db or a tracking server's http(s):// address"
            ) from None


def service_callbacks(plan: Plan, run_dir: Path) -> list[LoggerCallback]:
    """The Tune callbacks of the services the matrix tracks to (none, one or both)."""
    tracking = plan.matrix.tracking
    callbacks: list[LoggerCallback] = []
    if tracking.wandb is not None:
        callbacks.append(WandbRuns(plan, run_dir))
    if tracking.mlflow is not None:
        callbacks.append(MlflowRuns(plan, run_dir))
    return callbacks


def reported(result: dict[str, Any]) -> dict[str, Any]:
    """What the trial body reported, without the keys Tune adds to every result."""
    return {k: v for k, v in result.items() if k not in TUNE_KEYS}


def trial_config(trial) -> tuple[str, dict[str, Any]]:
    """(bertabl's trial id, what a run records as its config) of a Tune trial."""
    params = trial_params(trial.config)
    dumped = params.config.model_dump(mode="json")
    return params.id, {"trial_id": params.id, "stage": params.stage, **dumped}


def _curve_point_of_run(
    callback: LoggerCallback, trial, result: dict[str, Any], runs: dict
) -> tuple[int, dict[str, float]] | None:
    """The (step, scalars) of a result to log to the trial's run in `runs` (the callback's own
    table of started runs), starting the run first where it has none yet (a trial resumed in a
    later `bertabl resume` reports before Tune starts it again); None: nothing to log (no curve
    point, or a trial with no run)."""
    point = curve_point(reported(result))
    if point is None:
        return None
    if trial not in runs:
        callback.log_trial_start(trial)
    return point if trial in runs else None


class StepLogger(_WandbLoggingActor):
    """Ray's per-run logging actor (W&B wants each run in a process of its own), logging each
    result at the trial's own step: Ray's takes the step from Tune's counter."""

    def run(self):
        os.environ["WANDB_START_METHOD"] = "thread"
        run = self._wandb.init(*self.args, **self.kwargs)
        while True:
            kind, content = self.queue.get()
            if kind == _QueueItem.END:
                break
            if kind == _QueueItem.RESULT:
                run.log(content["scalars"], step=content[TRAINING_ITERATION])
        run.finish()
        # Ray kills this actor once `run` returns: wandb's atexit hook never runs, and its
        # service process keeps the run's last records buffered until torn down (measured: a
        # short trial's offline run file left with its header alone).
        self._wandb.teardown()


class WandbRuns(WandbLoggerCallback):
    """WandbLoggerCallback with bertabl's run names, configs and steps."""

    _logger_actor_cls = StepLogger

    def __init__(self, plan: Plan, run_dir: Path):
        settings = plan.matrix.tracking.wandb
        super().__init__(project=settings.project)
        self.settings = settings
        self.group = plan.matrix.name
        self.run_dir = Path(run_dir)
        self.names = run_names(plan)
        (self.run_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)

    def setup(self, *args, **kwargs) -> None:
        # Ray's looks for an API key unless the WANDB_MODE variable says offline; the matrix
        # says it here (and preflight checked the key of an online run).
        if self.settings.mode == "online":
            super().setup(*args, **kwargs)

    def log_trial_start(self, trial) -> None:
        trial_id, config = trial_config(trial)
        if trial_id not in self.names:
            return
        self._start_logging_actor(
            trial,
            [],
            id=wandb_run_id(self.run_dir, trial_id),
            name=self.names[trial_id],
            group=self.group,
            job_type=config["stage"],
            project=self.settings.project,
            entity=self.settings.entity,
            mode=self.settings.mode,
            dir=str(self.run_dir),
            config={"run": self.names[trial_id], **config},
            resume="allow",
            allow_val_change=True,
        )

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        point = _curve_point_of_run(self, trial, result, self._trial_logging_actors)
        if point is None:
            return
        step, scalars = point
        if scalars:  # an untrained control reports its step and nothing to plot
            item = {TRAINING_ITERATION: step, "scalars": scalars}
            self._trial_queues[trial].put((_QueueItem.RESULT, item))

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial in self._trial_queues:
            super().log_trial_end(trial, failed)

    def log_trial_save(self, trial) -> None:
        pass  # checkpoints stay in the run directory; W&B gets the curves and configs


class MlflowRuns(MLflowLoggerCallback):
    """MLflowLoggerCallback with bertabl's run names, params and steps; a trial's run is found
    again by its tags when the trial resumes in a later `bertabl resume`."""

    def __init__(self, plan: Plan, run_dir: Path):
        super().__init__(
            tracking_uri=mlflow_uri(plan, run_dir),
            experiment_name=mlflow_experiment(plan),
            tags={"bertabl.run_dir": str(Path(run_dir).resolve())},
        )
        self.names = run_names(plan)

    def setup(self, *args, **kwargs) -> None:
        super().setup(*args, **kwargs)
        self.client = self.mlflow_util._get_client()

    def log_trial_start(self, trial) -> None:
        trial_id, config = trial_config(trial)
        if trial_id not in self.names or trial in self._trial_runs:
            return
        tags = {**self.tags, "bertabl.trial_id": trial_id, "bertabl.stage": config["stage"]}
        run_id = (
            self._run_of(tags)
            or self.mlflow_util.start_run(run_name=self.names[trial_id], tags=tags).info.run_id
        )
        self._trial_runs[trial] = run_id
        # Batched (MLflow takes 100 params a call); the same values again when a trial resumes:
        # MLflow accepts an unchanged param.
        from mlflow.entities import Param

        params = [Param(key, str(value)) for key, value in flatten_dict(config).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])

    def _run_of(self, tags: dict[str, str]) -> str | None:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.mlflow_util.experiment_id], filter_string=query)
        return runs[0].info.run_id if runs else None

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        point = _curve_point_of_run(self, trial, result, self._trial_runs)
        if point is None:
            return
        step, scalars = point
        if scalars:
            # One transaction for the result: Ray's util writes each metric on its own, after
            # a query for the run (measured: ~16 ms per point on a SQLite store here).
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(key, value, now, step) for key, value in scalars.items()]
            self.client.log_batch(self._trial_runs[trial], metrics=metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id = self._trial_runs.pop(trial, None)
        if run_id is not None:
            self.mlflow_util.end_run(run_id=run_id, status="FAILED" if failed else "FINISHED")
