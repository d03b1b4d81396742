"""A Plan as JSON, and back, without touching the data: what a run directory keeps of the plan
it ran (`plan.json`), so `status`, `report`, `export` and `resume` read the trials as they were
run, whatever happened to the inputs since.

Everything a Plan holds is stored as built: the resolved matrix, the report rows, every trial's
id and resolved config (their dependencies are in the configs: a fine-tune's `pretrain_id`, a
test-split trial's `trials`), the cells, recipes, checkpoints, parameter and token counts, and
the fingerprints of the input files (data/fingerprints.py). Rebuilding one validates the configs
again (pydantic), and never reads, hashes or re-expands anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bertabl.data.fingerprints import Fingerprint
from bertabl.errors import UserError
from bertabl.matrix.models import CheckpointModel
from bertabl.matrix.plan import Plan
from bertabl.matrix.rows import Row
from bertabl.matrix.schema import Matrix
from bertabl.matrix.trials import FinetuneTrial, PretrainTrial, TestTrial
from bertabl.trial.finetune import (
    CheckpointRef,
    FinetuneConfig,
    FinetuneTrialConfig,
    MultitaskTrialConfig,
    Recipe,
    TaskViewConfig,
    TestTrialConfig,
)
from bertabl.trial.pretrain import PretrainTrialConfig

# Bump when the layout below changes; a newer file than this bertabl reads is refused.
PLAN_SCHEMA = 1
_FINETUNE_KINDS: dict[str, type[FinetuneConfig]] = {
    "single": FinetuneTrialConfig,
    "multitask": MultitaskTrialConfig,
    "view": TaskViewConfig,
}


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """Everything `plan_from_json` needs to give the same Plan back (JSON values only)."""
    return {
        "plan_schema": PLAN_SCHEMA,
        "matrix": plan.matrix.model_dump(mode="json"),
        "rows": [asdict(row) for row in plan.rows],
        "pretrain": [
            {"id": t.id, "config": t.config.model_dump(mode="json"), "parameters": t.parameters}
            for t in plan.pretrain
        ],
        "finetune": [_finetune(t) for t in plan.finetune],
        "views": [_finetune(t) for t in plan.views],
        "tests": [{"id": t.id, "config": t.config.model_dump(mode="json")} for t in plan.tests],
        "checkpoints": [
            asdict(c) | {"checkpoint": c.checkpoint.model_dump(mode="json")}
            for c in plan.checkpoints
        ],
        "recipes": [
            {"row": row, "task": task, "recipe": recipe.model_dump(mode="json")}
            for (row, task), recipe in plan.recipes.items()
        ],
        "cells": [[task, ids] for task, ids in plan.cells],
        "inputs": [asdict(f) for f in plan.inputs],
    }


def read_plan(path: Path) -> Plan:
    """The plan stored in `path` (a run directory's plan.json, or one of its plans/)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable bertabl plan ({err})") from None
    return plan_from_json(data, str(path))


def plan_from_json(data: dict[str, Any], where: str) -> Plan:
    """The Plan `plan_to_json` stored; `where` names the file in errors."""
    schema = data.get("plan_schema")
    if schema != PLAN_SCHEMA:
        raise UserError(
            f"{where}: plan schema {schema}, this bertabl reads {PLAN_SCHEMA}; use the bertabl "
            "version that wrote the run directory (or `bertabl run` its matrix again)"
        )
    rows = [_row(r) for r in data["rows"]]
    return Plan(
        matrix=Matrix.model_validate(data["matrix"]),
        rows=rows,
        pretrain=[
            PretrainTrial(t["id"], PretrainTrialConfig.model_validate(t["config"]), t["parameters"])
            for t in data["pretrain"]
        ],
        finetune=[_finetune_trial(t) for t in data["finetune"]],
        recipes={
            (r["row"], r["task"]): Recipe.model_validate(r["recipe"]) for r in data["recipes"]
        },
        views=[_finetune_trial(t) for t in data["views"]],
        checkpoints=[
            CheckpointModel(**(c | {"checkpoint": CheckpointRef.model_validate(c["checkpoint"])}))
            for c in data["checkpoints"]
        ],
        tests=[
            TestTrial(t["id"], TestTrialConfig.model_validate(t["config"])) for t in data["tests"]
        ],
        cells=[(task, list(ids)) for task, ids in data["cells"]],
        inputs=[Fingerprint(**f) for f in data["inputs"]],
    )


def _finetune(trial: FinetuneTrial) -> dict[str, Any]:
    kind = next(k for k, cls in _FINETUNE_KINDS.items() if type(trial.config) is cls)
    return {
        "id": trial.id,
        "kind": kind,
        "config": trial.config.model_dump(mode="json"),
        "parameters": trial.parameters,
        "tokens": trial.tokens,
    }


def _finetune_trial(data: dict[str, Any]) -> FinetuneTrial:
    config = _FINETUNE_KINDS[data["kind"]].model_validate(data["config"])
    return FinetuneTrial(data["id"], config, config.grid_point, data["parameters"], data["tokens"])


def _row(data: dict[str, Any]) -> Row:
    """A Row from its JSON: the tuples JSON made lists of become tuples again."""
    settings = tuple((key, value) for key, value in data["settings"])
    return Row(**(data | {"settings": settings, "head": tuple(data["head"])}))
