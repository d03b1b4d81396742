"""`bertabl export` (orchestrate/export.py): the cell's selected model, from the run directory
alone, loadable by transformers; and one clear error for each cell it cannot export."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertabl.errors import UserError
from bertabl.finetune.epoch_loop import finetune
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import MatrixSource, tomllib, validate
from bertabl.orchestrate.export import export_model
from bertabl.orchestrate.store import RunStore
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from bertabl.trial.files import FINAL_WEIGHTS
from tests.conftest import FIXTURES, TINY_MATRIX
from tests.tasks.test_custom import _reviews

CPU = torch.device("cpu")


def _run_dir(tmp_path: Path, reviews: Path):
    """A run directory as `bertabl run` leaves it, its trials run in this process (no Ray): one
    pre-training, a custom 3-class task fine-tuned with 2 restarts, and a multi-task row."""
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = raw["pretrain"]["variants"][:1]
    raw["data"]["custom_tasks"] = {"reviews": _reviews(reviews)}
    raw["finetune"]["tasks"] = ["reviews", "syn_agree"]
    raw["finetune"]["multitask"] = [{"name": "mt", "tasks": ["reviews", "syn_agree"]}]
    plan = build_plan(validate(raw, "m.toml"), "m.toml")
    store = RunStore(tmp_path / "run")
    source = MatrixSource(path="m.toml", sha256="0" * 64, scale="tiny")
    store.write_manifest(plan.matrix.model_dump(mode="json"), source.to_dict())
    store.write_plan(plan)
    return plan, store


def _train(plan, store: RunStore, trials) -> None:
    [pt] = plan.pretrain
    if not store.is_done(pt.id):
        metrics = pretrain(pt.config, store.trial_dir(pt.id), TrialRuntime(CPU))
        store.write_record(pt.id, pt.config.model_dump(mode="json"), "done", metrics=metrics)
    for trial in trials:
        folder = store.trial_dir(trial.id)
        metrics = finetune(trial.config, store.model_dir(pt.id), folder, TrialRuntime(CPU))
        store.write_record(trial.id, trial.config.model_dump(mode="json"), "done", metrics=metrics)


def test_the_best_restart_on_dev_is_written_out_without_the_tasks_data(tmp_path: Path):
    reviews = tmp_path / "reviews"
    shutil.copytree(FIXTURES / "custom", reviews)
    plan, store = _run_dir(tmp_path, reviews)
    row = plan.rows[0]
    trials = cell_trials(plan, row, "reviews")
    _train(plan, store, trials)
    dev = {t.id: store.record(t.id).metrics["dev_accuracy"] for t in trials}
    best = max(trials, key=lambda t: (dev[t.id], -t.restart))  # the first of the best on dev
    shutil.rmtree(reviews)  # the task's data is gone: the model is all export needs

    about = export_model(store.root, row.name, "reviews", tmp_path / "out")
    assert about == {
        "trial": best.id,
        "row": row.name,
        "task": "reviews",
        "grid_point": {"batch_size": 16, "learning_rate": 0.001, "epochs": 1},
        "restart": best.restart,
        "dev_accuracy": dev[best.id],
        "class": "BertForSequenceClassification",
        "run": str(store.root),
    }
    assert json.loads((tmp_path / "out" / "bertabl_export.json").read_text()) == about
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert model.config.id2label == {0: "neg", 1: "mid", 2: "pos"}
    kept = load_file(store.trial_dir(best.id) / FINAL_WEIGHTS / "model.safetensors")
    exported = model.state_dict()
    head = [k for k in kept if k.startswith("classifier.")]
    assert head and all(torch.equal(kept[k], exported[k]) for k in head)


def test_each_cell_it_cannot_export_is_one_clear_error(tmp_path: Path):
    plan, store = _run_dir(tmp_path, FIXTURES / "custom")
    single, multitask = plan.rows[0].name, plan.rows[-1].name
    rows = f"{single}, {multitask}"
    cases = [
        ((single, "nope"), "--task nope: the run does not fine-tune it; tasks: reviews, syn"),
        (("nope", "reviews"), f"--row nope: no such row in .*; rows: {re.escape(rows)}"),
        ((multitask, "reviews"), "a multi-task row's shared encoder is not exported"),
        ((single, "syn_agree"), "syn_agree: no finished trial to export; run the matrix first"),
    ]
    for (row, task), message in cases:
        with pytest.raises(UserError, match=message):
            export_model(store.root, row, task, tmp_path / "out")
    trials = cell_trials(plan, plan.rows[0], "syn_agree")
    _train(plan, store, trials)
    for trial in trials:
        shutil.rmtree(store.trial_dir(trial.id) / FINAL_WEIGHTS)
    with pytest.raises(UserError, match="kept no final weights .* re-run the trial to export"):
        export_model(store.root, single, "syn_agree", tmp_path / "out")
