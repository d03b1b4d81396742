"""A written report, published to the matrix's experiment trackers (W&B, MLflow): a run named
`report` beside the trials' runs, holding the headline table (every shown cell: row, column,
mean, std, interval, mark; `<name>.headline.csv`) and the report's files. Published again after
every `bertabl run`/`resume` of the run directory, into the same run."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bertabl.matrix.plan import Plan
from bertabl.orchestrate.tracking import (
    mlflow_experiment,
    mlflow_experiment_id,
    mlflow_uri,
    require,
    wandb_run_id,
)
from bertabl.report.build import Written

REPORT_RUN = "report"


def publish_report(plan: Plan, run_dir: Path, written: Written) -> list[str]:
    """Log the report to each tracker the matrix names; where it went, one line each."""
    tracking = plan.matrix.tracking
    if tracking.wandb is None and tracking.mlflow is None:
        return []
    folder = written.paths[0].parent
    headline = folder / f"{plan.matrix.name}.headline.csv"
    headline.write_text(written.headline, encoding="utf-8")
    files = [*written.paths, headline]
    lines = []
    if tracking.wandb is not None:
        lines.append(_to_wandb(plan, Path(run_dir), written.headline, files))
    if tracking.mlflow is not None:
        lines.append(_to_mlflow(plan, Path(run_dir), files))
    return lines


def _to_wandb(plan: Plan, run_dir: Path, headline: str, files: list[Path]) -> str:
    wandb = require("wandb")
    settings = plan.matrix.tracking.wandb
    name = plan.matrix.name
    run = wandb.init(
        project=settings.project,
        entity=settings.entity,
        mode=settings.mode,
        dir=str(run_dir),
        id=wandb_run_id(run_dir, REPORT_RUN),
        name=REPORT_RUN,
        group=name,
        job_type=REPORT_RUN,
        resume="allow",
        config={"matrix": name, "run_dir": str(run_dir.resolve())},
        settings=wandb.Settings(silent=True),  # `bertabl run` says where the runs are
    )
    rows = list(csv.reader(io.StringIO(headline)))
    run.log({"headline": wandb.Table(columns=rows[0], data=rows[1:])})
    artifact = wandb.Artifact(f"{name}-report", type="report")
    for path in files:
        artifact.add_file(str(path))
    run.log_artifact(artifact)
    run.finish()
    wandb.teardown()  # flush now: the run's records are read (wandb sync) right after
    return f"W&B: the report (headline table, {len(files)} files) in run {REPORT_RUN}"


def _to_mlflow(plan: Plan, run_dir: Path, files: list[Path]) -> str:
    mlflow = require("mlflow")
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri(plan, run_dir))
    experiment_id = mlflow_experiment_id(client, plan, run_dir)
    tags = {"bertabl.run_dir": str(run_dir.resolve()), "bertabl.kind": REPORT_RUN}
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    found = client.search_runs([experiment_id], filter_string=query)
    run_id = (
        found[0].info.run_id
        if found
        else client.create_run(experiment_id, run_name=REPORT_RUN, tags=tags).info.run_id
    )
    for path in files:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    experiment = mlflow_experiment(plan)
    return f"MLflow: the report ({len(files)} files) in run {REPORT_RUN} of experiment {experiment}"
