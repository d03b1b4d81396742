"""One rank's part of a trial: which model a fine-tune starts from, a cell's test-split scoring
of the grid point selected on dev, and the runtime a body gets (progress from rank 0, only the
intermediate models a finished pre-training still lacks)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bertabl.finetune import test_splits
from bertabl.finetune.families.base import Scored
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.resources import TrialResources
from bertabl.orchestrate import rank
from bertabl.orchestrate.params import RunSettings, TrialParams
from bertabl.orchestrate.record import Status
from bertabl.orchestrate.store import RunStore
from bertabl.parallel import Group
from bertabl.trial.finetune import CheckpointRef
from bertabl.trial.finetune import TestTrialConfig as ScoringConfig  # not Test...: not collected
from tests.conftest import TINY_MATRIX

CPU = torch.device("cpu")


def _plan(**finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"))


def test_a_fine_tune_starts_from_its_pretrainings_model_or_its_checkpoint(tmp_path: Path):
    store = RunStore(tmp_path)
    config = _plan().finetune[0].config
    assert rank.model_folder(config, store) == tmp_path / "trials" / config.pretrain_id / "model"
    step = config.model_copy(update={"pretrain_step": 5})
    assert rank.model_folder(step, store) == store.trial_dir(config.pretrain_id) / (
        "model-step-000000005"
    )
    folder = CheckpointRef(identity={"sha256": "ab"}, location=str(tmp_path / "released"))
    released = config.model_copy(update={"checkpoint": folder, "pretrain_id": "ck-00000000"})
    assert rank.model_folder(released, store) == tmp_path / "released"


def test_a_cells_test_scoring_scores_the_dev_selected_point_only(tmp_path: Path, monkeypatch):
    plan = _plan(grid={"batch_size": [16], "learning_rate": [1e-3, 1e-4], "epochs": [1]})
    cell = [
        t
        for t in plan.finetune
        if t.task == "syn_agree" and t.pretrain_id == plan.rows[0].pretrain_id
    ]
    assert len(cell) == 4  # 2 learning rates x 2 restarts
    store = RunStore(tmp_path)
    # lr 1e-3: dev 0.6, 0.7 (mean 0.65); lr 1e-4: 0.9 and a failed restart (mean 0.9): chosen
    outcomes = [(Status.DONE, 0.6), (Status.DONE, 0.7), (Status.DONE, 0.9), (Status.FAILED, None)]
    for trial, (status, dev) in zip(cell, outcomes, strict=True):
        metrics = {"dev_accuracy": dev} if dev is not None else None
        store.write_record(trial.id, trial.config.model_dump(mode="json"), status, metrics)
    scored_models = []

    def score_kept(config, model_dir, trial_dir, splits, runtime):
        scored_models.append((config.learning_rate, config.restart, model_dir, splits))
        return {"test": Scored({"accuracy": 0.5 + config.restart / 10}, [])}

    monkeypatch.setattr(test_splits, "score_kept", score_kept)
    scoring = ScoringConfig(
        task="syn_agree", task_data=cell[0].config.task_data, metric="accuracy",
        trials=[t.id for t in cell], splits=["test"],
    )  # fmt: skip
    result = rank.test_body(scoring, store, tmp_path / "te", None, None)
    chosen = cell[2]  # lr 1e-4, restart 0: the selected point's only finished restart
    assert result == {
        "grid_point": {"batch_size": 16, "learning_rate": 1e-4, "epochs": 1},
        "trials": {chosen.id: {"test_accuracy": 0.5}},
    }
    assert scored_models == [(1e-4, 0, store.model_dir(chosen.pretrain_id), ["test"])]
    assert store.record(chosen.id).metrics == {"dev_accuracy": 0.9, "test_accuracy": 0.5}
    assert "test_accuracy" not in store.record(cell[0].id).metrics


@pytest.fixture
def on_a_node(monkeypatch):
    """Ray's view of where this process runs, without a Ray instance."""
    import ray

    context = SimpleNamespace(get_node_id=lambda: "node-1")
    monkeypatch.setattr(ray, "get_runtime_context", lambda: context)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.0.0.1")


def _params(trial, tmp_path: Path, stage: str, save_steps=()) -> TrialParams:
    run = RunSettings(
        run_dir=str(tmp_path), checkpoint_every=0, checkpoint_keep=2, precision="fp32",
        deterministic=False, worker_restarts=0, train_storage=str(tmp_path / "train"),
        save_steps={trial.id: list(save_steps)},
    )  # fmt: skip
    resources = TrialResources(stage, workers=1, cpus_per_worker=1, gpus_per_worker=0,
                               placement="PACK")  # fmt: skip
    return TrialParams(trial.id, stage, trial.config, resources, run)


def test_a_rank_runs_its_body_and_rank_0_reports_progress(tmp_path, monkeypatch, on_a_node):
    trial = _plan().finetune[0]
    seen = {}

    def body(config, store, out_dir, runtime, group):
        seen.update(config=config, out_dir=out_dir, runtime=runtime)
        runtime.report({"epoch": 1, "dev_accuracy": 0.75})
        runtime.history.append({"epoch": 1})
        return {"dev_accuracy": 0.75}

    monkeypatch.setitem(rank.BODIES, "finetune", body)
    reports = []
    outcome = rank.run_rank(_params(trial, tmp_path, "finetune"), Group.single(CPU), reports.append)
    store = RunStore(tmp_path)
    assert seen["config"] is trial.config and seen["out_dir"] == store.trial_dir(trial.id)
    assert seen["runtime"].cache_dir == store.cache_dir and not seen["runtime"].intermediate_only
    assert reports == [{"epoch": 1, "dev_accuracy": 0.75}]
    assert store.progress(trial.id).metrics == {"epoch": 1, "dev_accuracy": 0.75}
    assert outcome.metrics == {"dev_accuracy": 0.75} and outcome.history == [{"epoch": 1}]
    [here] = outcome.workers
    assert (here.rank, here.node_id, here.node_ip, here.device) == (
        0, "node-1", "10.0.0.1", "cpu"
    )  # fmt: skip
    assert not (store.trial_dir(trial.id) / "workers.json").exists()  # one worker: no file


def test_a_finished_pretraining_reruns_only_for_the_models_it_lacks(
    tmp_path, monkeypatch, on_a_node
):
    trial = _plan().pretrain[0]
    store = RunStore(tmp_path)
    store.write_record(trial.id, trial.config.model_dump(mode="json"), Status.DONE, {"step": 10})
    store.model_dir(trial.id, 4).mkdir(parents=True)  # kept by the first run; step 8 was not
    runtimes = []
    monkeypatch.setitem(
        rank.BODIES, "pretrain", lambda c, s, o, runtime, g: runtimes.append(runtime)
    )
    params = _params(trial, tmp_path, "pretrain", save_steps=[4, 8])
    outcome = rank.run_rank(params, Group.single(CPU), lambda metrics: None)
    [runtime] = runtimes
    assert runtime.intermediate_only and runtime.save_steps == (8,)
    assert outcome.intermediate_only is True
