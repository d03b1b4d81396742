"""Expansion of a matrix into a Plan: trial counts, stable trial ids, compute estimates.

Expected numbers are worked out by hand in the comments, never taken from the code under test.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bertabl.data.tokenizer import vocab_size
from bertabl.errors import MatrixError
from bertabl.matrix import Plan, build_plan, load_matrix
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.compute import (
    PAPER_BASE_FLOPS,
    PAPER_BASE_TOKENS,
    bert_parameters,
    training_flops,
)
from bertabl.matrix.load import tomllib, validate
from tests.conftest import REPO

DEMO = REPO / "matrices" / "demo.toml"

PT_ID = re.compile(r"^pt-[0-9a-f]{8}$")
FT_ID = re.compile(r"^ft-[0-9a-f]{8}$")

# A small matrix: 1 pre-training config, 2 tasks, a 1 x 2 x 1 grid, 2 restarts.
BASE = """\
name = "small"

[data.synthetic]
seed = 0
train_examples = 100
dev_examples = 50

[pretrain]
objective = "mlm_nsp"
steps = 10
batch_size = 4
max_seq_len = 32
learning_rate = 1e-3

[pretrain.model]
layers = 1
hidden = 16
heads = 2
max_position = 64

[finetune]
tasks = ["syn_agree", "syn_chain"]
restarts = 2
max_seq_len = 24

[finetune.grid]
batch_size = [8]
learning_rate = [1e-4, 2e-4]
epochs = [1]
"""

# The same matrix as BASE, written with sections and keys in another order, with
# dotted keys instead of a table header, and an inline table. (Top-level keys must precede the
# first table in TOML, so `name` stays first.)
BASE_REORDERED = """\
name = "small"

[finetune.grid]
epochs = [1]
learning_rate = [1e-4, 2e-4]
batch_size = [8]

[finetune]
max_seq_len = 24
restarts = 2
tasks = ["syn_agree", "syn_chain"]

[pretrain]
learning_rate = 1e-3
model = { max_position = 64, heads = 2, hidden = 16, layers = 1 }
max_seq_len = 32
batch_size = 4
steps = 10
objective = "mlm_nsp"

[data]
synthetic.dev_examples = 50
synthetic.train_examples = 100
synthetic.seed = 0
"""


def base_raw() -> dict[str, Any]:
    return tomllib.loads(BASE)


def plan_of(raw: dict[str, Any]) -> Plan:
    return build_plan(validate(raw, origin="test"), origin="test")


def plan_of_text(text: str, tmp_path: Path, name: str = "m.toml") -> Plan:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    matrix, _ = load_matrix(path)
    return build_plan(matrix, origin=str(path))


def set_path(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of `raw` with `value` at `dotted` (plain dots; no quoted keys needed here)."""
    out = copy.deepcopy(raw)
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def check_consistent(plan: Plan) -> None:
    pt_ids = [t.id for t in plan.pretrain]
    assert len(set(pt_ids)) == len(pt_ids)
    assert all(PT_ID.match(i) for i in pt_ids)
    ft_ids = [t.id for t in plan.finetune]
    assert len(set(ft_ids)) == len(ft_ids)
    assert all(FT_ID.match(i) for i in ft_ids)
    assert all(t.pretrain_id in pt_ids for t in plan.finetune)
    assert all(t.config.pretrain_id == t.pretrain_id for t in plan.finetune)
    assert {r.pretrain_id for r in plan.rows} == set(pt_ids)
    for t in [*plan.pretrain, *plan.finetune]:
        assert plan.trial(t.id) is t


# --- expansion counts --------------------------------------------------------------------------


def test_demo_counts() -> None:
    matrix, _ = load_matrix(DEMO)
    plan = build_plan(matrix, origin=str(DEMO))
    # 3 variants (bert_base: mlm_nsp, no_nsp: mlm, none) -> 3 distinct pre-training configs
    assert len(plan.pretrain) == 3
    # 3 variants x 2 tasks x (1 batch x 1 lr x 1 epochs) x 5 restarts = 30
    assert len(plan.finetune) == 30
    assert [r.name for r in plan.rows] == ["bert_base", "no_nsp", "none"]
    assert [r.label for r in plan.rows] == [
        "BERT (MLM + NSP)",
        "No NSP (MLM only)",
        "No pre-training",
    ]
    objectives = [plan.trial(r.pretrain_id).config.pretrain.objective for r in plan.rows]
    assert objectives == ["mlm_nsp", "mlm", "none"]
    check_consistent(plan)
    for row in plan.rows:
        for task in ("syn_agree", "syn_chain"):
            assert len(cell_trials(plan, row, task)) == 5  # 1 grid point x 5 restarts


def test_base_without_variants_or_axes_is_one_row() -> None:
    plan = plan_of(base_raw())
    assert [(r.name, r.label, r.settings) for r in plan.rows] == [("base", "base", ())]
    assert len(plan.pretrain) == 1
    # 1 x 2 tasks x (1 x 2 x 1) x 2 restarts = 8
    assert len(plan.finetune) == 8
    check_consistent(plan)


def test_axes_times_variants(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[pretrain.axes]
objective = ["mlm_nsp", "mlm"]
"model.layers" = [1, 2]

[[pretrain.variants]]
name = "short"

[[pretrain.variants]]
name = "long"
label = "Long run"
pretrain = { steps = 20 }
"""
    )
    plan = plan_of_text(text, tmp_path)
    # 2 variants x 2 objectives x 2 layer counts = 8 distinct pre-training configs
    assert len(plan.pretrain) == 8
    assert len(plan.rows) == 8
    # 8 x 2 tasks x (1 x 2 x 1) x 2 restarts = 64
    assert len(plan.finetune) == 64
    check_consistent(plan)
    names = [r.name for r in plan.rows]
    assert names == [
        f"{v}/objective={o},model.layers={n}"
        for v in ("short", "long")
        for o in ("mlm_nsp", "mlm")
        for n in (1, 2)
    ]
    assert plan.rows[-1].label == "Long run (objective=mlm,model.layers=2)"
    last = plan.trial(plan.rows[-1].pretrain_id).config.pretrain
    assert (last.steps, last.objective, last.model.layers) == (20, "mlm", 2)
    assert plan.rows[-1].settings == (("steps", 20), ("objective", "mlm"), ("model.layers", 2))


def test_axis_row_names() -> None:
    raw = set_path(
        base_raw(), "pretrain.axes", {"objective": ["mlm_nsp", "mlm"], "model.layers": [1, 2]}
    )
    plan = plan_of(raw)
    assert [r.name for r in plan.rows] == [
        "objective=mlm_nsp,model.layers=1",
        "objective=mlm_nsp,model.layers=2",
        "objective=mlm,model.layers=1",
        "objective=mlm,model.layers=2",
    ]
    assert [r.label for r in plan.rows] == [r.name for r in plan.rows]
    assert len(plan.pretrain) == 4
    # 4 x 2 tasks x 2 lr x 2 restarts = 32
    assert len(plan.finetune) == 32
    check_consistent(plan)


def test_identical_variants_share_one_pretraining_trial() -> None:
    raw = set_path(
        base_raw(),
        "pretrain.variants",
        [
            {"name": "plain"},
            {"name": "explicit", "pretrain": {"objective": "mlm_nsp", "steps": 10}},
            # 4 x hidden = 4 x 16 = 64: the default feed-forward size, so the same model
            {"name": "ffn", "pretrain": {"model": {"intermediate": 64}}},
            {"name": "other", "pretrain": {"objective": "mlm"}},
        ],
    )
    plan = plan_of(raw)
    assert [r.name for r in plan.rows] == ["plain", "explicit", "ffn", "other"]
    assert len(plan.pretrain) == 2
    assert plan.rows[0].pretrain_id == plan.rows[1].pretrain_id == plan.rows[2].pretrain_id
    assert plan.rows[3].pretrain_id != plan.rows[0].pretrain_id
    # fine-tuning runs once per pre-training trial, not per row: 2 x 2 tasks x 2 lr x 2 = 16
    assert len(plan.finetune) == 16
    # a cell of a shared trial is the same trials for every row that uses it
    assert cell_trials(plan, plan.rows[0], "syn_agree") == cell_trials(
        plan, plan.rows[2], "syn_agree"
    )
    check_consistent(plan)


def test_grid_count() -> None:
    raw = base_raw()
    raw = set_path(
        raw,
        "finetune.grid",
        {"batch_size": [8, 16], "learning_rate": [1e-4, 2e-4, 3e-4], "epochs": [1, 2]},
    )
    raw = set_path(raw, "finetune.restarts", 3)
    plan = plan_of(raw)
    # 1 pre-training trial x 2 tasks x (2 batch x 3 lr x 2 epochs) x 3 restarts = 72
    assert len(plan.finetune) == 72
    check_consistent(plan)
    points = {(t.task, t.grid_point, t.restart) for t in plan.finetune}
    assert len(points) == 72
    assert {dict(t.grid_point)["batch_size"] for t in plan.finetune} == {8, 16}
    assert {dict(t.grid_point)["epochs"] for t in plan.finetune} == {1, 2}
    for t in plan.finetune:
        point = dict(t.grid_point)
        assert list(point) == ["batch_size", "learning_rate", "epochs"]
        for key, value in point.items():
            assert getattr(t.config, key) == value
        assert t.config.task == t.task and t.config.restart == t.restart
    assert len(cell_trials(plan, plan.rows[0], "syn_chain")) == 36  # 12 grid points x 3 restarts


def test_restarts_get_distinct_ids_and_seeds() -> None:
    raw = set_path(base_raw(), "finetune.restarts", 3)
    raw = set_path(raw, "finetune.seed", 5)
    plan = plan_of(raw)
    groups: dict[tuple, list] = {}
    for t in plan.finetune:
        groups.setdefault((t.task, t.grid_point), []).append(t)
    assert len(groups) == 4  # 2 tasks x 2 lr
    for trials in groups.values():
        assert sorted(t.restart for t in trials) == [0, 1, 2]
        assert sorted(t.config.seed for t in trials) == [5, 6, 7]  # finetune.seed + restart
        assert len({t.id for t in trials}) == 3


def test_invalid_axis_combination_raises_matrix_error() -> None:
    raw = set_path(base_raw(), "pretrain.axes", {"model.hidden": [16, 18], "model.heads": [2, 4]})
    with pytest.raises(MatrixError) as info:
        plan_of(raw)
    # 18 % 4 = 2: only the (18, 4) combination is invalid
    assert "model.hidden=18" in str(info.value) and "model.heads=4" in str(info.value)


@pytest.mark.parametrize(
    "where",
    [
        # base hidden 16 / heads 2; hidden 24 with heads 3 is valid (24 % 3 = 0), but heads 3
        # checked alone against hidden 16 is not (16 % 3 = 1)
        (
            "pretrain.variants",
            [{"name": "wide", "pretrain": {"model": {"hidden": 24, "heads": 3}}}],
        ),
        # base max_seq_len 32 / max_position 64; 128 <= 128 is valid, 128 alone > 64 is not
        (
            "pretrain.variants",
            [{"name": "long", "pretrain": {"max_seq_len": 128, "model": {"max_position": 128}}}],
        ),
        ("pretrain.axes", {"model.hidden": [24], "model.heads": [3]}),
    ],
    ids=["variant-hidden-heads", "variant-seq-positions", "axes-hidden-heads"],
)
def test_coupled_keys_changed_together(where: tuple[str, Any]) -> None:
    plan = plan_of(set_path(base_raw(), *where))
    assert len(plan.pretrain) == 1


# --- trial ids ---------------------------------------------------------------------------------


def ids(plan: Plan) -> tuple[list[str], list[str]]:
    return [t.id for t in plan.pretrain], [t.id for t in plan.finetune]


def test_ids_ignore_key_and_table_order(tmp_path: Path) -> None:
    a = plan_of_text(BASE, tmp_path, "a.toml")
    b = plan_of_text(BASE_REORDERED, tmp_path, "b.toml")
    assert ids(a) == ids(b)
    check_consistent(a)


def test_ids_ignore_list_order_of_grid_and_tasks() -> None:
    raw = base_raw()
    shuffled = set_path(raw, "finetune.grid.learning_rate", [2e-4, 1e-4])
    shuffled = set_path(shuffled, "finetune.tasks", ["syn_chain", "syn_agree"])
    a, b = plan_of(raw), plan_of(shuffled)
    assert ids(a)[0] == ids(b)[0]
    assert sorted(ids(a)[1]) == sorted(ids(b)[1])
    assert ids(a)[1] != ids(b)[1]  # same trials, another order


def test_ids_stable_across_loads() -> None:
    first = build_plan(load_matrix(DEMO)[0], origin=str(DEMO))
    second = build_plan(load_matrix(DEMO)[0], origin="another origin")
    assert ids(first) == ids(second)
    assert all(PT_ID.match(i) for i in ids(first)[0])
    assert all(FT_ID.match(i) for i in ids(first)[1])


def test_ids_stable_across_processes() -> None:
    # a fresh interpreter with another hash seed: ids must not depend on hash() or set order
    code = (
        "import json, sys\n"
        "from bertabl.matrix import build_plan, load_matrix\n"
        "plan = build_plan(load_matrix(sys.argv[1])[0])\n"
        "print(json.dumps([[t.id for t in plan.pretrain], [t.id for t in plan.finetune]]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(DEMO)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout
    here = build_plan(load_matrix(DEMO)[0])
    assert json.loads(out) == [list(x) for x in ids(here)]


def test_intermediate_default_is_four_times_hidden() -> None:
    unset = plan_of(base_raw())
    explicit = plan_of(set_path(base_raw(), "pretrain.model.intermediate", 64))  # 4 x 16
    other = plan_of(set_path(base_raw(), "pretrain.model.intermediate", 32))
    assert ids(unset) == ids(explicit)
    assert unset.pretrain[0].config.pretrain.model.intermediate == 64
    assert ids(other)[0] != ids(unset)[0]


def test_int_and_float_spellings_give_one_id() -> None:
    # TOML `1` and `1.0` for a float key are one value
    a = plan_of(set_path(base_raw(), "pretrain.learning_rate", 1))
    b = plan_of(set_path(base_raw(), "pretrain.learning_rate", 1.0))
    assert ids(a) == ids(b)


def test_settings_outside_the_trials_do_not_change_ids() -> None:
    before = ids(plan_of(base_raw()))
    for key, value in [
        ("name", "renamed"),
        ("description", "other words"),
        ("resources.cpus_per_trial", 4.0),
        ("resources.gpus_per_trial", 0.5),
        ("report.title", "A title"),
        ("finetune.selection_metric", {"syn_agree": "accuracy"}),
        ("pretrain.variants", [{"name": "x", "label": "Any label"}]),
    ]:
        assert ids(plan_of(set_path(base_raw(), key, value))) == before, key


# (key, new value); the BASE value differs from every new value
PRETRAIN_SIDE = [
    ("pretrain.steps", 11),
    ("pretrain.batch_size", 8),
    ("pretrain.max_seq_len", 48),
    ("pretrain.learning_rate", 5e-4),
    ("pretrain.warmup_fraction", 0.05),
    ("pretrain.weight_decay", 0.0),
    ("pretrain.adam_epsilon", 1e-8),
    ("pretrain.seed", 1),
    ("pretrain.objective", "mlm"),
    ("pretrain.masking", {"mask": 0.9, "random": 0.05, "same": 0.05}),
    ("pretrain.masking.probability", 0.2),
    ("pretrain.model.layers", 2),
    ("pretrain.model.hidden", 32),
    ("pretrain.model.heads", 4),
    ("pretrain.model.intermediate", 32),
    ("pretrain.model.dropout", 0.2),
    ("pretrain.model.max_position", 128),
    ("data.synthetic.seed", 1),
    ("data.synthetic.documents", 50),
    ("data.synthetic.sentences_per_document", 6),
]
FINETUNE_SIDE = [
    ("finetune.grid.batch_size", [16]),
    ("finetune.grid.learning_rate", [3e-4, 4e-4]),
    ("finetune.grid.epochs", [3]),
    ("finetune.seed", 7),
    ("finetune.max_seq_len", 32),
    ("finetune.weight_decay", 0.1),
    ("finetune.warmup_fraction", 0.2),
    ("finetune.eval_batch_size", 64),
    ("data.synthetic.train_examples", 200),
    ("data.synthetic.dev_examples", 60),
]


@pytest.mark.parametrize(("key", "value"), PRETRAIN_SIDE, ids=[k for k, _ in PRETRAIN_SIDE])
def test_pretraining_change_changes_all_ids(key: str, value: Any) -> None:
    before_pt, before_ft = ids(plan_of(base_raw()))
    after_pt, after_ft = ids(plan_of(set_path(base_raw(), key, value)))
    assert len(after_pt) == 1 and after_pt != before_pt
    # every fine-tuning id depends on its pre-training id, so all of them change too
    assert len(after_ft) == len(before_ft) == 8
    assert not set(after_ft) & set(before_ft)


@pytest.mark.parametrize(("key", "value"), FINETUNE_SIDE, ids=[k for k, _ in FINETUNE_SIDE])
def test_finetuning_change_changes_only_ft_ids(key: str, value: Any) -> None:
    before_pt, before_ft = ids(plan_of(base_raw()))
    after_pt, after_ft = ids(plan_of(set_path(base_raw(), key, value)))
    assert after_pt == before_pt
    assert after_ft and not set(after_ft) & set(before_ft)


def test_id_change_lists_are_long_enough() -> None:
    assert len(PRETRAIN_SIDE) + len(FINETUNE_SIDE) >= 12
    assert len({k for k, _ in PRETRAIN_SIDE + FINETUNE_SIDE}) == len(PRETRAIN_SIDE + FINETUNE_SIDE)


# --- compute -----------------------------------------------------------------------------------

# BERT-Base: V=30522, L=12, H=768, F=3072, P=512
#   embeddings  (30522 + 512 + 2) * 768 + 2*768          = 23,835,648 + 1,536  = 23,837,184
#   per layer   attention 4*(768*768 + 768) + 2*768       = 2,362,368 + 1,536   =  2,363,904
#               ffn 768*3072 + 3072 + 3072*768 + 768 + 2*768                    =  4,723,968
#               together                                                         =  7,087,872
#   12 layers                                                                    = 85,054,464
#   pooler      768*768 + 768                                                    =    590,592
#   MLM head    768*768 + 768 + 2*768 + 30522 (decoder bias; weight tied)        =    622,650
#   NSP head    2*768 + 2                                                        =      1,538
#   total       23,837,184 + 85,054,464 + 590,592 + 622,650 + 1,538             = 110,106,428
BERT_BASE_PARAMS = 110_106_428

# Small config: V=100, L=2, H=32, F=64, P=64
#   embeddings  (100 + 64 + 2) * 32 + 2*32 = 5,312 + 64        = 5,376
#   per layer   4*(32*32 + 32) + 2*32 = 4,224 + 64             = 4,288
#               32*64 + 64 + 64*32 + 32 + 2*32                 = 4,256    -> 8,544; x2 = 17,088
#   pooler      32*32 + 32                                     = 1,056
#   MLM head    32*32 + 32 + 2*32 + 100                        = 1,220
#   NSP head    2*32 + 2                                       =    66
#   total       5,376 + 17,088 + 1,056 + 1,220 + 66            = 24,806
SMALL = {"vocab": 100, "layers": 2, "hidden": 32, "ffn": 64, "max_position": 64}
SMALL_PARAMS = 24_806
SMALL_POOLER = 32 * 32 + 32  # 1,056
SMALL_NSP_HEAD = 2 * 32 + 2  # 66


def test_bert_base_parameters() -> None:
    params = bert_parameters(30522, 12, 768, 3072, 512)
    assert params == BERT_BASE_PARAMS
    assert abs(params - 110e6) / 110e6 < 0.01  # the paper's "110M"


def test_small_parameters_by_hand() -> None:
    assert bert_parameters(**SMALL) == SMALL_PARAMS
    # without NSP: no NSP head and no pooler (only NSP trains it)
    assert bert_parameters(**SMALL, nsp=False) == SMALL_PARAMS - SMALL_NSP_HEAD - SMALL_POOLER


def _hf_config():
    transformers = pytest.importorskip("transformers")
    return transformers, transformers.BertConfig(
        vocab_size=SMALL["vocab"],
        num_hidden_layers=SMALL["layers"],
        hidden_size=SMALL["hidden"],
        num_attention_heads=2,
        intermediate_size=SMALL["ffn"],
        max_position_embeddings=SMALL["max_position"],
    )


def test_parameters_match_transformers_with_nsp() -> None:
    transformers, config = _hf_config()
    model = transformers.BertForPreTraining(config)
    # parameters() yields a tied tensor once: the decoder weight is the word embedding matrix
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    counted = sum(p.numel() for p in model.parameters())
    assert counted == SMALL_PARAMS
    assert bert_parameters(**SMALL, nsp=True) == counted


def test_parameters_without_nsp_vs_transformers_masked_lm() -> None:
    transformers, config = _hf_config()
    model = transformers.BertForMaskedLM(config)
    # BertForMaskedLM has neither the NSP head nor the pooler (add_pooling_layer=False); the
    # MLM-only objective trains exactly this model.
    assert model.bert.pooler is None
    counted = sum(p.numel() for p in model.parameters())
    assert counted == SMALL_PARAMS - SMALL_NSP_HEAD - SMALL_POOLER  # 23,684
    assert bert_parameters(**SMALL, nsp=False) == counted


def test_paper_base_flops() -> None:
    # tokens: 1,000,000 steps x 256 sequences x (0.9 x 128 + 0.1 x 512 = 115.2 + 51.2 = 166.4)
    #       = 256,000,000 x 166.4 = 42,598,400,000
    assert PAPER_BASE_TOKENS == pytest.approx(42_598_400_000, rel=1e-12)
    # FLOPs: 6 x 110,106,428 x 42,598,400,000 = 660,638,568 x 4.25984e10 ~ 2.814e19
    assert PAPER_BASE_FLOPS == pytest.approx(6 * 110_106_428 * 42_598_400_000, rel=1e-12)
    assert PAPER_BASE_FLOPS == pytest.approx(2.8e19, rel=0.01)


def test_training_flops() -> None:
    assert training_flops(1000, 50) == 300_000  # 6 x 1000 x 50


def test_trial_compute() -> None:
    raw = set_path(base_raw(), "pretrain.axes", {"objective": ["mlm_nsp", "mlm"]})
    plan = plan_of(raw)
    v = vocab_size(plan.matrix.data)
    # L=1, H=16, F=64, P=64:
    #   embeddings (V + 64 + 2)*16 + 2*16 = 16V + 1,088;  layer 4*(256+16) + 32 = 1,120 plus
    #   16*64 + 64 + 64*16 + 16 + 32 = 2,160 -> 3,280;  pooler 256 + 16 = 272;
    #   MLM head 256 + 16 + 32 + V = 304 + V;  NSP head 2*16 + 2 = 34
    #   total 17V + 4,978 with NSP; without, no NSP head and no pooler: 17V + 4,672
    expected_params = {"mlm_nsp": 17 * v + 4_978, "mlm": 17 * v + 4_672}
    for trial in plan.pretrain:
        objective = trial.config.pretrain.objective
        assert trial.parameters == expected_params[objective]
        assert trial.tokens == 1_280  # 10 steps x 4 sequences x 32 tokens
        assert trial.flops == 6 * trial.parameters * 1_280
    for trial in plan.finetune:
        pt = plan.trial(trial.pretrain_id)
        assert trial.parameters == pt.parameters
        assert trial.tokens == 2_400  # 1 epoch x 100 train examples x 24 tokens
        assert trial.flops == 6 * pt.parameters * 2_400
    total = sum(6 * t.parameters * t.tokens for t in [*plan.pretrain, *plan.finetune])
    assert plan.total_flops == pytest.approx(total, rel=1e-12)


def test_demo_pretraining_tokens() -> None:
    plan = build_plan(load_matrix(DEMO)[0])
    tokens = {t.config.pretrain.objective: t.tokens for t in plan.pretrain}
    # 500 steps x 32 sequences x 64 tokens; the untrained control reads none
    assert tokens == {"mlm_nsp": 1_024_000, "mlm": 1_024_000, "none": 0}


def test_batch_that_cannot_split_over_workers_fails_at_plan_time() -> None:
    raw = base_raw()
    raw["resources"] = {"workers_per_trial": 3}  # base batch_size 4 is not a multiple of 3
    with pytest.raises(MatrixError, match=r"pretrain\.batch_size = 4 does not split evenly"):
        plan_of(raw)
    raw["resources"] = {"workers_per_trial": 2, "micro_batch_size": 3}  # 4 / 2 = 2 per worker
    with pytest.raises(MatrixError, match=r"resources\.micro_batch_size = 3 must divide"):
        plan_of(raw)
    raw["resources"] = {"workers_per_trial": 2, "micro_batch_size": 1}
    assert plan_of(raw).pretrain


def test_a_task_with_its_own_protocol_gets_its_own_grid_restarts_and_length():
    raw = tomllib.loads(BASE)
    plain = build_plan(validate(copy.deepcopy(raw), "m.toml"))
    raw["finetune"]["task_settings"] = {
        "syn_chain": {
            "max_seq_len": 24,
            "restarts": 3,
            "eval_batch_size": 7,
            "grid": {"learning_rate": [5e-4]},
        }
    }
    plan = build_plan(validate(raw, "m.toml"))
    agree = [t for t in plan.finetune if t.task == "syn_agree"]
    chain = [t for t in plan.finetune if t.task == "syn_chain"]
    # syn_agree keeps the section's protocol (and its trial ids); syn_chain: 1 lr x 3 restarts
    assert [t.id for t in agree] == [t.id for t in plain.finetune if t.task == "syn_agree"]
    assert len(chain) == 3
    assert {(t.config.max_seq_len, t.config.eval_batch_size) for t in chain} == {(24, 7)}
    assert {dict(t.grid_point)["learning_rate"] for t in chain} == {5e-4}
    assert sorted(t.restart for t in chain) == [0, 1, 2]
    # 1 epoch x 100 train examples x 24 tokens
    assert chain[0].tokens == 100 * 24
