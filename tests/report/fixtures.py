"""Report fixtures: real Plans of small matrices (tests/fixtures/report/<name>.toml merged over
common.toml) plus hand-written records (<name>.records.json) turned into run-store records."""

from __future__ import annotations

import json
from typing import Any

from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.plan import Plan
from bertabl.matrix.presets import deep_merge
from bertabl.orchestrate.record import Record, Status, Timings
from tests.conftest import FIXTURES as TEST_FIXTURES

FIXTURES = TEST_FIXTURES / "report"
LAYOUT_FIXTURES = ("generic", "table5", "table6", "table7", "table8", "fig5")
# What provenance says about this machine, pinned so golden files match everywhere.
VERSIONS = {"bertabl": "0.1.0", "python": "3.11.7", "torch": "2.13.0"}
GIT_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fixture_plan(name: str) -> Plan:
    """The fixture matrix's Plan; relative data paths resolve from the repository root."""
    common = tomllib.loads((FIXTURES / "common.toml").read_text())
    raw = deep_merge(common, tomllib.loads((FIXTURES / f"{name}.toml").read_text()))
    return build_plan(validate(raw, f"{name}.toml"))


def fixture_source(name: str) -> dict[str, Any]:
    return {
        "path": f"tests/fixtures/report/{name}.toml",
        "sha256": "ab" * 32,
        "scale": "tiny",
        "overrides": [],
    }


def fixture_records(plan: Plan, name: str) -> dict[str, Record]:
    """Records keyed by trial id, as RunStore.records() returns them.

    Fine-tuning entries are [row, task, learning_rate, restart, score, seconds]: the score is the
    task's selection metric on dev, or a dict of metrics, or a status ("failed", "blocked").
    Pre-training entries are keyed by a row name that uses the trial.
    """
    spec = json.loads((FIXTURES / f"{name}.records.json").read_text())
    rows = {row.name: row for row in plan.rows}
    records: dict[str, dict[str, Any]] = {}
    for row_name, entry in spec["pretrain"].items():
        trial = plan.trial(rows[row_name].pretrain_id)
        records[trial.id] = _record(trial, entry["status"], entry["metrics"], entry["seconds"])
    for row_name, task, lr, restart, score, seconds in spec["finetune"]:
        [trial] = [
            t
            for t in cell_trials(plan, rows[row_name], task)
            if dict(t.grid_point)["learning_rate"] == lr and t.restart == restart
        ]
        if isinstance(score, str):
            records[trial.id] = _record(trial, score, {}, seconds)
            continue
        metric = plan.matrix.metric_for(task)
        metrics = score if isinstance(score, dict) else {f"dev_{metric}": score}
        records[trial.id] = _record(trial, "done", metrics, seconds)
    return records


def _record(trial, status: str, metrics: dict[str, Any], seconds: float) -> Record:
    return Record(
        id=trial.id,
        stage=trial.config.stage,
        status=Status(status),
        config=trial.config.model_dump(mode="json"),
        metrics=metrics,
        history=[],
        timings=Timings(seconds=seconds) if status == "done" else Timings(),
        error=None if status == "done" else "fixture",
    )
