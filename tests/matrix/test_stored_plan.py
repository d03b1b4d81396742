"""A Plan stored as JSON and read back (matrix/stored_plan.py): the same Plan, without reading
the inputs, for every shape a plan takes (paper layouts, checkpoint and untrained rows, recipe
rows, multi-task groups and their views, custom tasks with their files, test splits)."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from bertabl.errors import UserError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.plan import Plan
from bertabl.matrix.stored_plan import PLAN_SCHEMA, plan_from_json, plan_to_json, read_plan
from tests.conftest import FIXTURES, TINY_MATRIX
from tests.matrix.test_models import save_tiny_bert
from tests.report.fixtures import LAYOUT_FIXTURES, fixture_plan
from tests.tasks.test_custom import _reviews


def _through_json(plan: Plan) -> Plan:
    return plan_from_json(json.loads(json.dumps(plan_to_json(plan))), "plan.json")


def _assert_same(plan: Plan, back: Plan) -> None:
    for field in fields(Plan):
        if field.name != "_by_id":
            assert getattr(back, field.name) == getattr(plan, field.name), field.name
    for trial in [*back.pretrain, *back.finetune, *back.views, *back.tests]:
        assert trial.config.id == trial.id  # the configs as they were: the same ids


@pytest.mark.parametrize("name", LAYOUT_FIXTURES)
def test_the_report_fixtures_plans_come_back_the_same(name: str, monkeypatch):
    from tests.conftest import REPO

    monkeypatch.chdir(REPO)  # their data paths are relative to the repository
    plan = fixture_plan(name)
    _assert_same(plan, _through_json(plan))


def test_every_kind_of_row_and_trial_comes_back_without_its_inputs(tmp_path: Path):
    folder = save_tiny_bert(tmp_path / "released")
    custom = tmp_path / "custom"
    shutil.copytree(FIXTURES / "custom", custom)
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"]["custom_tasks"] = {
        "reviews": _reviews(custom, test=str(custom / "reviews_test.csv"))
    }
    raw["pretrain"]["variants"] = [
        {"name": "here"},
        {"name": "released", "from": str(folder)},
        {"name": "control", "from": str(folder), "untrained": True},
    ]
    raw["finetune"] |= {
        "tasks": ["syn_agree", "reviews"],
        "recipe_variants": [{"name": "plain"}, {"name": "llrd", "recipe": {"layer_decay": 0.8}}],
        "multitask": [{"name": "mt", "tasks": ["syn_agree", "reviews"]}],
    }
    plan = build_plan(validate(raw, "m.toml"), "m.toml")
    # 3 variants x 2 recipe rows, and each of those with the multi-task group
    assert plan.checkpoints and plan.views and plan.tests and len(plan.rows) == 12
    assert {Path(f.path).name for f in plan.inputs} >= {
        "reviews_train.csv", "reviews_test.csv", "config.json", "model.safetensors"
    }  # fmt: skip
    stored = tmp_path / "plan.json"
    stored.write_text(json.dumps(plan_to_json(plan)))
    shutil.rmtree(folder)
    shutil.rmtree(custom)
    _assert_same(plan, read_plan(stored))


def test_a_plan_of_another_schema_or_no_plan_is_refused(tmp_path: Path):
    data = plan_to_json(fixture_plan("generic"))
    with pytest.raises(UserError, match=f"plan schema 99, this bertabl reads {PLAN_SCHEMA}"):
        plan_from_json(data | {"plan_schema": 99}, "plan.json")
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable bertabl plan"):
        read_plan(tmp_path / "plan.json")
