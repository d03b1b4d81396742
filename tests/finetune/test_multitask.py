"""Multi-task fine-tuning: one shared-encoder trial, a head per task, per-task results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertabl.errors import MatrixError
from bertabl.finetune.multitask import (
    MultiTaskModel,
    finetune_multitask,
    sampling_weights,
    schedule,
    task_stream,
)
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.orchestrate.store import RunStore
from bertabl.orchestrate.trainables import write_views
from bertabl.pretrain.step_loop import pretrain
from bertabl.report.select import build_table
from bertabl.training import TrialRuntime
from bertabl.trial.identity import trial_id
from tests.conftest import FIXTURES, TINY_MATRIX, KillAfter, Killed, model_from

CPU = torch.device("cpu")
GROUP = {"name": "mt", "tasks": ["syn_agree", "syn_chain"]}


def _plan(groups=(GROUP,), variants=True, **finetune):
    raw = tomllib.loads(TINY_MATRIX)
    if not variants:
        del raw["pretrain"]["variants"]
    raw["finetune"]["multitask"] = list(groups)
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_plan_has_one_shared_trial_per_grid_point_and_restart():
    plan = _plan(variants=False)
    assert [r.name for r in plan.rows] == ["base", "mt"]
    shared = [t for t in plan.finetune if t.multitask]
    single = [t for t in plan.finetune if not t.multitask]
    assert len(single) == 4  # 2 tasks x 2 restarts, as without the group
    assert len(shared) == 2  # 1 grid point x 2 restarts, both tasks in each
    assert {t.task for t in shared} == {"syn_agree+syn_chain"}
    assert shared[0].multitask.model_dump() == {
        "tasks": ["syn_agree", "syn_chain"],
        "temperature": 1.0,
    }
    assert set(shared[0].config.task_data) == {"syn_agree", "syn_chain"}
    assert shared[0].tokens == 2 * single[0].tokens  # both tasks' examples
    # the multi-task row's cells are the shared trials' per-task views, which run nothing
    base, mt = plan.rows
    for task in ("syn_agree", "syn_chain"):
        views = cell_trials(plan, mt, task)
        assert len(views) == 2 and all(v.task == task for v in views)
        assert {v.view_of for v in views} == {t.id for t in shared}
        assert not {v.id for v in views} & {t.id for t in plan.finetune}
        assert cell_trials(plan, base, task) == [t for t in single if t.task == task]


def test_tasks_outside_the_group_stay_single_task():
    plan = _plan(groups=[{"name": "only", "tasks": ["syn_agree", "syn_chain"]}])
    assert [r.name for r in plan.rows] == ["bert_base", "no_nsp", "bert_base+only", "no_nsp+only"]
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["tasks"] = ["syn_agree", "syn_chain", "reviews"]
    folder = FIXTURES / "custom"
    raw["data"]["custom_tasks"] = {
        "reviews": {
            "format": "csv",
            "train": str(folder / "reviews_train.csv"),
            "dev": str(folder / "reviews_dev.csv"),
            "text": "review",
            "label": "stars",
            "labels": ["neg", "mid", "pos"],
        }
    }
    raw["finetune"]["multitask"] = [GROUP]
    plan = build_plan(validate(raw, "m.toml"))
    row = next(r for r in plan.rows if r.multitask)
    base = next(r for r in plan.rows if r.pretrain_id == row.pretrain_id and not r.multitask)
    assert cell_trials(plan, row, "reviews") == cell_trials(plan, base, "reviews") != []


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([{"name": "x", "tasks": ["syn_agree"]}], "at least 2 items"),
        ([{"name": "x", "tasks": ["syn_agree", "syn_agree"]}], "repeat a name"),
        ([{"name": "x", "tasks": ["syn_agree", "sst2"]}], r"\['sst2'\] not in finetune.tasks"),
        ([{"name": "x", "tasks": ["syn_agree", "conll2003"]}], "conll2003 is not"),
        ([{**GROUP, "temperature": 0.5}], "greater than or equal to 1"),
        ([GROUP, GROUP], "group names must be unique"),
    ],
)
def test_group_errors(groups, message):
    with pytest.raises(MatrixError, match=message):
        _plan(groups=groups)


def test_a_shared_encoder_needs_one_recipe():
    with pytest.raises(MatrixError, match=r"multitask \(mt\): .* different recipes"):
        _plan(task_settings={"syn_chain": {"recipe": {"layer_decay": 0.5}}})


def test_sampling_weights_and_schedule():
    assert sampling_weights([100, 400], 1.0) == pytest.approx([0.2, 0.8])
    # T = 2: sqrt sizes 10 and 20
    assert sampling_weights([100, 400], 2.0) == pytest.approx([1 / 3, 2 / 3])
    steps = schedule([100, 400], 10, 1.0, seed=0, epoch=1)
    assert len(steps) == 50  # (100 + 400) / 10 batches per epoch
    for task in (0, 1):  # each task's batches are numbered 0, 1, 2, ... in order
        numbers = [n for t, n in steps if t == task]
        assert numbers == list(range(len(numbers)))
    assert steps == schedule([100, 400], 10, 1.0, seed=0, epoch=1)  # replayable on resume
    assert steps != schedule([100, 400], 10, 1.0, seed=0, epoch=2)
    draws = [t for e in range(1, 41) for t, _ in schedule([100, 400], 10, 1.0, 0, e)]
    assert sum(draws) / len(draws) == pytest.approx(0.8, abs=0.03)  # 2000 draws of p = 0.8


def test_task_stream_passes_over_every_example():
    lengths = list(range(7))
    stream = task_stream(lengths, 3, 5, seed=0, epoch=1, task=0, grouped=False)
    assert len(stream) == 21  # 15 indices needed: three whole passes
    passes = [stream[i : i + 7] for i in (0, 7, 14)]
    assert all(sorted(p) == lengths for p in passes) and passes[0] != passes[1]


def test_shared_encoder_is_one_module(tmp_path: Path):
    from transformers import BertForSequenceClassification

    config = {
        "objective": "mlm_nsp",
        "model": {
            "layers": 1,
            "hidden": 16,
            "heads": 2,
            "intermediate": 32,
            "dropout": 0.0,
            "max_position": 32,
        },
    }
    model_from(config, vocab_size=40, pad_token_id=0).save_pretrained(tmp_path)
    heads = {
        "a": BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2),
        "b": BertForSequenceClassification.from_pretrained(tmp_path, num_labels=1),
    }
    model = MultiTaskModel(heads)
    assert model.heads["a"].bert is model.heads["b"].bert
    encoder = sum(p.numel() for p in model.heads["a"].bert.parameters())
    classifiers = 2 * 16 + 2 + 16 + 1
    assert sum(p.numel() for p in model.parameters()) == encoder + classifiers


def test_tiny_multitask_run_reports_each_tasks_metric(tmp_path: Path):
    plan = _plan(variants=False, grid={"batch_size": [16], "learning_rate": [1e-3], "epochs": [2]})
    pretrain(plan.pretrain[0].config, tmp_path / "pt", TrialRuntime(CPU))
    trial = next(t for t in plan.finetune if t.multitask)
    runtime = TrialRuntime(CPU)
    metrics = finetune_multitask(trial.config, tmp_path / "pt" / "model", tmp_path / "a", runtime)
    for task in ("syn_agree", "syn_chain"):
        assert 0.0 <= metrics[f"{task}/dev_accuracy"] <= 1.0
        assert metrics[f"{task}/train_loss"] > 0
    assert [h["epoch"] for h in runtime.history] == [1, 2]

    # the views' records are what the multi-task row's report cells select from
    store = RunStore(tmp_path / "run")
    write_views(store, trial.config, metrics, runtime.history)
    assert trial_id("ft", trial.config.model_dump(mode="json")) == trial.id
    records = store.records()
    row = plan.rows[1]
    for task in ("syn_agree", "syn_chain"):
        view = next(v for v in cell_trials(plan, row, task) if v.view_of == trial.id)
        assert records[view.id].metrics["dev_accuracy"] == metrics[f"{task}/dev_accuracy"]
        assert len(records[view.id].history) == 2
    table = build_table(plan, records)
    cell = table.cell(row, "syn_chain")
    assert cell.status == "partial" and cell.values == [metrics["syn_chain/dev_accuracy"]]

    # interrupted and resumed == straight through
    ckpt = tmp_path / "b" / "ckpt"
    with pytest.raises(Killed):
        finetune_multitask(
            trial.config,
            tmp_path / "pt" / "model",
            tmp_path / "b",
            TrialRuntime(CPU, checkpoints=KillAfter(ckpt, at_step=3), checkpoint_every=3),
        )
    again = TrialRuntime(CPU, checkpoints=Checkpointer(ckpt), checkpoint_every=3)
    resumed = finetune_multitask(trial.config, tmp_path / "pt" / "model", tmp_path / "b", again)
    assert again.resumed_from == 3 and resumed == metrics


E2E_MATRIX = """
name = "tiny"

[data.synthetic]
documents = 40
sentences_per_document = 6
train_examples = 64
dev_examples = 32

[data.custom_tasks.reviews]
format = "csv"
train = "{folder}/reviews_train.csv"
dev = "{folder}/reviews_dev.csv"
text = "review"
label = "stars"
labels = ["neg", "mid", "pos"]

[pretrain]
steps = 10
batch_size = 8
max_seq_len = 32
learning_rate = 1e-3

[pretrain.model]
layers = 1
hidden = 32
heads = 2
max_position = 64

[finetune]
tasks = ["syn_agree", "reviews"]
restarts = 1
max_seq_len = 32
recipe_variants = [{{ name = "bert" }}, {{ name = "mean", recipe = {{ pooling = "mean" }} }}]
multitask = [{{ name = "mt", tasks = ["syn_agree", "reviews"], temperature = 2.0 }}]

[finetune.grid]
batch_size = [16]
learning_rate = [1e-3]
epochs = [1]
"""


@pytest.mark.slow
def test_multitask_and_recipe_rows_through_ray_and_the_report(tmp_path: Path):
    """The real Ray stages: a custom task, recipe variants and a multi-task group in one run."""
    import json

    from typer.testing import CliRunner

    from bertabl.cli import app

    matrix = tmp_path / "m.toml"
    matrix.write_text(E2E_MATRIX.format(folder=FIXTURES / "custom"))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(matrix), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    plan = build_plan(validate(tomllib.loads(matrix.read_text()), str(matrix)))
    paths = (run_dir / "trials").glob("*/record.json")
    records = {r["id"]: r for r in (json.loads(p.read_text()) for p in paths)}
    shared = [t for t in plan.finetune if t.multitask]
    assert len(shared) == 2  # one per recipe row
    wanted = {"syn_agree/dev_accuracy", "reviews/dev_accuracy", "reviews/dev_macro_f1"}
    for trial in shared:
        assert wanted <= set(records[trial.id]["metrics"])
    for row in plan.rows:  # every cell, single- or multi-task, has its records
        for task in ("syn_agree", "reviews"):
            assert all(records[t.id]["status"] == "done" for t in cell_trials(plan, row, task))
    report = (run_dir / "tiny.md").read_text().split("## Cells in detail")[0]
    lines = [line for line in report.splitlines() if line.startswith(("| bert", "| mean"))]
    assert [line.split(" | ")[0] for line in lines] == [
        "| bert",
        "| mean",
        "| bert, multi-task (syn_agree + reviews)",
        "| mean, multi-task (syn_agree + reviews)",
    ]
    assert all(line.count(".") == 2 for line in lines)  # two filled cells (e.g. 50.0, 13.3)
