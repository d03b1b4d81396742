"""Fine-tuning trials, built piece by piece: each grid point's restarts and their settings, the
recipe a task's trials train with, where a task's data comes from (and, before it is
downloaded, a stand-in), and what a trial costs."""

from __future__ import annotations

import pytest

from bertabl.errors import DataError, MatrixError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.rows import RecipeRow
from bertabl.matrix.trials import grid_settings, multitask_key, resolved_recipe, task_data
from tests.conftest import TINY_MATRIX, fixture_copies


def _matrix(**finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"] |= finetune
    return validate(raw, "m.toml")


def test_each_grid_point_runs_its_restarts_in_matrix_order_with_their_seeds():
    matrix = _matrix(
        grid={"batch_size": [16, 32], "learning_rate": [1e-3, 1e-4], "epochs": [1]},
        seed=7,
        task_settings={"syn_chain": {"max_seq_len": 24, "restarts": 3}},
    )
    model = build_plan(matrix).pretrain[0]
    recipe = resolved_recipe(matrix, None, "syn_chain", "m.toml")
    protocol = matrix.finetune.protocol("syn_chain")
    head = ("linear", 0, None)
    settings = list(grid_settings(matrix.finetune, protocol, model, 5, head, recipe, True))
    points = [
        (("batch_size", b), ("learning_rate", lr), ("epochs", 1))
        for b in (16, 32)
        for lr in (1e-3, 1e-4)
    ]
    assert [point for point, _ in settings] == [p for p in points for _ in range(3)]
    assert [s["restart"] for _, s in settings] == [0, 1, 2] * 4
    assert [s["seed"] for _, s in settings] == [7, 8, 9] * 4  # finetune.seed + restart
    first = settings[0][1]
    assert (first["batch_size"], first["learning_rate"], first["epochs"]) == (16, 1e-3, 1)
    assert (first["pretrain_id"], first["pretrain_step"], first["checkpoint"]) == (
        model.id,
        5,
        None,
    )
    assert (first["max_seq_len"], first["head"], first["recipe"]) == (24, "linear", recipe)


def test_a_tasks_recipe_is_the_matrixs_then_its_own_then_its_rows():
    matrix = _matrix(
        recipe={"layer_decay": 0.9, "ema_decay": 0.5},
        task_settings={"syn_chain": {"recipe": {"layer_decay": 0.8}}},
    )
    assert resolved_recipe(matrix, None, "syn_agree", "m.toml").changes() == {
        "layer_decay": 0.9, "ema_decay": 0.5
    }  # fmt: skip
    assert resolved_recipe(matrix, None, "syn_chain", "m.toml").changes() == {
        "layer_decay": 0.8, "ema_decay": 0.5
    }  # fmt: skip
    row = RecipeRow("frozen", "frozen", {"freeze_layers": 1, "ema_decay": 0.0}, "here")
    assert resolved_recipe(matrix, row, "syn_chain", "m.toml").changes() == {
        "layer_decay": 0.8, "freeze_layers": 1
    }  # fmt: skip
    wrong = RecipeRow("bad", "bad", {"unfreeze_every": 1}, "finetune.recipe_variants[0] (bad)")
    with pytest.raises(MatrixError, match=r"m.toml: finetune.recipe_variants\[0\] \(bad\), task "
                       r"syn_agree: unfreeze_every needs something frozen"):  # fmt: skip
        resolved_recipe(matrix, wrong, "syn_agree", "m.toml")


def test_pooling_is_for_sentence_tasks_only():
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"] |= {"tasks": ["syn_agree", "conll2003"], "recipe": {"pooling": "mean"}}
    matrix = validate(raw, "m.toml")
    assert resolved_recipe(matrix, None, "syn_agree", "m.toml").pooling == "mean"
    assert resolved_recipe(matrix, None, "conll2003", "m.toml").pooling == "cls_pooler"


def test_missing_task_data_names_the_key_or_becomes_a_warning_in_a_dry_run(tmp_path):
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"]["glue_dir"] = str(tmp_path / "absent")
    raw["data"]["tasks"] = {"rte": {"max_train_examples": 100}}
    raw["finetune"]["tasks"] = ["rte", "mrpc"]
    matrix = validate(raw, "m.toml")
    with pytest.raises(DataError, match=r"^m.toml: data.glue_dir \(task rte\): "):
        task_data(matrix, "rte", "m.toml")
    warnings: list[str] = []
    ref, examples = task_data(matrix, "rte", "m.toml", warnings)
    assert warnings[0].startswith("m.toml: data.glue_dir (task rte): ")
    assert ref.identity == {"source": "missing", "task": "rte", "max_train_examples": 100}
    assert examples == 100  # the slice asked for, not RTE's 2,490
    _, examples = task_data(matrix, "mrpc", "m.toml", warnings)
    assert examples == 3_668  # MRPC's standard train split
    synthetic, examples = task_data(matrix, "syn_agree", "m.toml")
    assert synthetic.identity["source"] == "synthetic" and examples == 64


def test_a_trials_cost_is_its_padded_tokens_times_six_parameters():
    plan = build_plan(_matrix())
    trial = plan.finetune[0]
    # 1 epoch x 64 synthetic training examples x 32 tokens each (every example padded: a bound)
    assert trial.tokens == 1 * 64 * 32
    assert trial.flops == 6 * trial.parameters * trial.tokens
    assert trial.parameters == plan.pretrain[0].parameters
    pretraining = plan.pretrain[0]
    assert pretraining.tokens == 10 * 8 * 32  # steps x batch x max_seq_len
    assert (pretraining.layers, pretraining.causal, pretraining.checkpoint) == (1, False, None)
    ltr = build_plan(
        validate(tomllib.loads(TINY_MATRIX.replace('"mlm"', '"ltr"')), "m.toml")
    ).pretrain[1]
    assert ltr.causal


def test_a_multitask_group_is_its_tasks_and_temperature():
    matrix = _matrix(multitask=[{"name": "mt", "tasks": ["syn_agree", "syn_chain"]}])
    key = multitask_key(matrix, "mt")
    assert (key.tasks, key.temperature) == (["syn_agree", "syn_chain"], 1.0)
    assert multitask_key(matrix, "") is None


@pytest.mark.parametrize("setting", [None, True, False])
def test_multiple_choice_batches_in_random_order_unless_the_matrix_says(tmp_path, setting):
    # Length-grouped batches cost accuracy on the parity bench's SWAG-format case (issue 27,
    # tasks/spec.py UNGROUPED_FAMILIES); the other families keep the grouping's padding saving.
    swag = fixture_copies(tmp_path / "swag", "swag/val.csv", ("train.csv", "val.csv"))
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"]["swag_dir"] = str(swag)
    raw["finetune"]["tasks"] = ["swag", "syn_chain"]
    if setting is not None:
        raw["finetune"]["group_by_length"] = setting
    grouped = {
        t.config.task: t.config.group_by_length
        for t in build_plan(validate(raw, "m.toml")).finetune
    }
    expected = (
        {"swag": False, "syn_chain": True}
        if setting is None
        else {"swag": setting, "syn_chain": setting}
    )
    assert grouped == expected
