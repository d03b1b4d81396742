"""Report rows: named after their variant and settings, one per pre-training step (Figure 5),
recipe row and multi-task group they are crossed with; a row's head is its variant's, else the
matrix's, unless a recipe variant changes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertabl.errors import MatrixError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.rows import (
    Row,
    pretrain_row,
    recipe_rows,
    rows_per_multitask,
    rows_per_pretrain_step,
    rows_per_recipe,
)
from tests.conftest import TINY_MATRIX
from tests.matrix.test_models import save_tiny_bert


def _matrix(variants: list[dict] | None = None, **finetune):
    raw = tomllib.loads(TINY_MATRIX)
    if variants is not None:
        raw["pretrain"]["variants"] = variants
    raw["finetune"] |= finetune
    return validate(raw, "m.toml")


def _plan(variants: list[dict], **finetune):
    return build_plan(_matrix(variants, **finetune), "m.toml")


def test_a_row_is_named_after_its_variant_and_its_axes_settings():
    matrix = _matrix([{"name": "wide", "label": "Wide", "finetune": {"head": "bilstm"}}])
    [variant] = matrix.pretrain.variants
    overrides = [("model.hidden", 64)]
    row = pretrain_row(variant, overrides, [("steps", 20), ("objective", "mlm")], "pt-1", matrix)
    assert (row.name, row.label) == ("wide/steps=20,objective=mlm", "Wide (steps=20,objective=mlm)")
    assert row.settings == (
        ("model.hidden", 64), ("steps", 20), ("objective", "mlm"), ("head", "bilstm")
    )  # fmt: skip
    assert row.head == ("bilstm", 0, None) and row.variant == "wide"
    plain = pretrain_row(None, [], [], "pt-2", matrix)  # no variants, no axes: the base
    assert (plain.name, plain.label, plain.settings, plain.head) == (
        "base", "base", (), ("linear", 0, None)
    )  # fmt: skip
    axes_only = pretrain_row(None, [], [("model.layers", 2)], "pt-3", matrix)
    assert (axes_only.name, axes_only.label) == ("model.layers=2", "model.layers=2")


def test_a_feature_row_names_its_mode_and_takes_the_matrixs_by_default():
    matrix = _matrix(
        [{"name": "concat", "finetune": {"head": "features", "features": "concat_last_four"}},
         {"name": "default", "finetune": {"head": "features"}}, {"name": "tuned"}],
        features="last_hidden",
    )  # fmt: skip
    concat, default, tuned = (
        pretrain_row(v, [], [], "pt", matrix) for v in matrix.pretrain.variants
    )
    assert concat.head == ("features", 0, "concat_last_four")
    assert concat.settings == (("head", "features"), ("features", "concat_last_four"))
    assert default.head == ("features", 0, "last_hidden")  # finetune.features
    assert tuned.head == ("linear", 0, None)  # a feature mode only with the features head


def test_one_row_per_pretraining_step_the_last_one_the_final_model():
    rows = [Row("a", "A", "pt-a", ()), Row("none", "None", "pt-0", ())]
    steps = {"pt-a": 10, "pt-0": 0}
    expanded = rows_per_pretrain_step(rows, steps, [5, 10], "m.toml")
    assert [(r.name, r.label, r.pretrain_step) for r in expanded] == [
        ("a@5", "A (5 steps)", 5),
        ("a@10", "A (10 steps)", None),  # the final model: no intermediate save needed
        ("none", "None", None),  # untrained: the same model at every step, one row
    ]
    assert rows_per_pretrain_step(rows, steps, [], "m.toml") == rows
    with pytest.raises(MatrixError, match=r"finetune.pretrain_steps\[1\]: step 20 is beyond"):
        rows_per_pretrain_step(rows, steps, [5, 20], "m.toml")


def test_recipe_rows_are_variants_times_axes():
    matrix = _matrix(
        recipe_variants=[{"name": "llrd", "label": "LLRD", "recipe": {"layer_decay": 0.8}},
                         {"name": "lstm", "head": "bilstm"}],
        recipe_axes={"ema_decay": [0.0, 0.99]},
    )  # fmt: skip
    recipes = recipe_rows(matrix)
    assert [(r.name, r.label, r.keys) for r in recipes] == [
        ("llrd/ema_decay=0.0", "LLRD (ema_decay=0.0)", {"layer_decay": 0.8, "ema_decay": 0.0}),
        ("llrd/ema_decay=0.99", "LLRD (ema_decay=0.99)", {"layer_decay": 0.8, "ema_decay": 0.99}),
        ("lstm/ema_decay=0.0", "lstm (ema_decay=0.0)", {"ema_decay": 0.0}),
        ("lstm/ema_decay=0.99", "lstm (ema_decay=0.99)", {"ema_decay": 0.99}),
    ]
    assert recipes[0].where == (
        "finetune.recipe_variants[0] (llrd) with finetune.recipe_axes (ema_decay=0.0)"
    )
    rows = rows_per_recipe([Row("bert", "BERT", "pt-1", (("objective", "mlm"),))], matrix)
    assert [r.name for r in rows][:2] == ["bert+llrd/ema_decay=0.0", "bert+llrd/ema_decay=0.99"]
    assert rows[0].label == "BERT, LLRD (ema_decay=0.0)" and rows[0].recipe == recipes[0].name
    assert rows[0].settings == (
        ("objective", "mlm"), ("recipe.layer_decay", 0.8), ("recipe.ema_decay", 0.0)
    )  # fmt: skip
    assert rows[2].head == ("bilstm", 0, None) and rows[2].settings[-1] == ("head", "bilstm")
    assert recipe_rows(_matrix()) == [] and rows_per_recipe(rows[:1], _matrix()) == rows[:1]


def test_without_pretraining_variants_a_recipe_row_is_named_alone():
    matrix = _matrix([], recipe_variants=[{"name": "plain"}, {"name": "frozen",
                     "recipe": {"freeze_embeddings": True}}])  # fmt: skip
    rows = rows_per_recipe([Row("base", "base", "pt-1", ())], matrix)
    assert [(r.name, r.label) for r in rows] == [("plain", "plain"), ("frozen", "frozen")]


def test_a_multitask_row_follows_every_single_task_row():
    group = {"name": "mt", "label": "MT-DNN style", "tasks": ["syn_agree", "syn_chain"]}
    matrix = _matrix(multitask=[group])
    rows = [Row("bert_base", "BERT", "pt-1", (), variant="bert_base")]
    [added] = rows_per_multitask(rows, matrix)
    assert (added.name, added.label, added.multitask) == (
        "bert_base+mt",
        "BERT, MT-DNN style",
        "mt",
    )
    assert added.settings == (("multitask", "syn_agree+syn_chain"),)
    alone = rows_per_multitask([Row("base", "base", "pt-1", ())], matrix)
    assert [r.name for r in alone] == ["mt"]


def test_a_row_is_crossed_only_with_the_recipes_it_lists(tmp_path: Path):
    folder = save_tiny_bert(tmp_path / "released")
    recipes = [{"name": "plain"}, {"name": "llrd", "recipe": {"layer_decay": 0.8}}]
    variants = [
        {"name": "released", "from": str(folder)},
        {"name": "control", "from": str(folder), "untrained": True,
         "finetune": {"recipes": ["plain"]}},
    ]  # fmt: skip
    plan = _plan(variants, recipe_variants=recipes)
    assert [r.name for r in plan.rows] == ["released+plain", "released+llrd", "control+plain"]
    with pytest.raises(MatrixError, match=r"variants\[1\].finetune.recipes: 'lrd' is not a"):
        variants[1]["finetune"]["recipes"] = ["lrd"]
        _plan(variants, recipe_variants=recipes)


def test_a_multitask_group_is_crossed_only_with_the_recipes_it_lists(tmp_path: Path):
    recipes = [{"name": "plain"}, {"name": "llrd", "recipe": {"layer_decay": 0.8}}]
    group = {"name": "mt", "tasks": ["syn_agree", "syn_chain"], "recipes": ["plain"]}
    plan = _plan([{"name": "bert_base"}], recipe_variants=recipes, multitask=[group])
    names = [r.name for r in plan.rows]
    assert names == ["bert_base+plain", "bert_base+llrd", "bert_base+plain+mt"]
    group["recipes"] = ["lldr"]
    with pytest.raises(MatrixError, match=r"multitask\[0\].recipes: 'lldr' is not a recipe row"):
        _plan([{"name": "bert_base"}], recipe_variants=recipes, multitask=[group])
