"""Finding runs and trials on disk (what `bertabl resume <trial>` and `status` rely on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertabl.errors import UserError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.lookup import find_trial_run, plan_of_run, run_dirs
from bertabl.orchestrate.store import RunStore
from tests.conftest import TINY_MATRIX


def _run(root: Path, name: str, steps: int = 10):
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["steps"] = steps
    plan = build_plan(validate(raw, "m.toml"))
    store = RunStore(root / name)
    store.write_manifest(plan.matrix.model_dump(mode="json"), {"path": "m.toml"})
    return store, plan


def test_runs_are_found_and_replanned_from_their_manifest(tmp_path: Path, monkeypatch):
    store, plan = _run(tmp_path / "runs", "a")
    _run(tmp_path / "runs", "b", steps=20)
    assert run_dirs(tmp_path / "runs") == [tmp_path / "runs" / "a", tmp_path / "runs" / "b"]
    assert run_dirs(store.root) == [store.root]
    assert [t.id for t in plan_of_run(store).finetune] == [t.id for t in plan.finetune]

    monkeypatch.chdir(tmp_path)  # trials are looked up under ./runs
    found, found_plan = find_trial_run(plan.finetune[0].id, None)
    assert found.root == store.root and found_plan.finetune[0].id == plan.finetune[0].id
    with pytest.raises(UserError, match="is not planned in runs/"):
        find_trial_run("ft-00000000", None)
    with pytest.raises(UserError, match="neither a run directory nor a trial id"):
        find_trial_run("pt-123", None)


def test_a_trial_planned_by_two_runs_needs_run_dir(tmp_path: Path, monkeypatch):
    _, plan = _run(tmp_path / "runs", "a")
    _run(tmp_path / "runs", "copy")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="is in several runs"):
        find_trial_run(plan.pretrain[0].id, None)
    store, _ = find_trial_run(plan.pretrain[0].id, tmp_path / "runs" / "copy")
    assert store.root == tmp_path / "runs" / "copy"
