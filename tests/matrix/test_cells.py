"""Which fine-tuning trials stand behind a report row's cell, and, the other way round, which rows
each trial stands behind (what `plan`, `status` and live progress name it by)."""

from __future__ import annotations

from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials, trial_rows, trial_words
from bertabl.matrix.load import tomllib, validate
from tests.conftest import TINY_MATRIX


def _plan(**finetune):
    raw = tomllib.loads(TINY_MATRIX)
    # a third row pre-trained exactly as bert_base: the same model, so the same fine-tunes
    raw["pretrain"]["variants"].append({"name": "twin", "pretrain": {"objective": "mlm_nsp"}})
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"))


def test_a_cell_is_its_rows_model_task_grid_and_restarts():
    plan = _plan()
    bert, no_nsp, twin = plan.rows
    cell = cell_trials(plan, bert, "syn_agree")
    assert [(t.task, t.restart) for t in cell] == [("syn_agree", 0), ("syn_agree", 1)]
    assert {t.pretrain_id for t in cell} == {bert.pretrain_id}
    ids = [t.id for t in cell]
    assert [t.id for t in cell_trials(plan, twin, "syn_agree")] == ids  # same model: same trials
    assert not set(ids) & {t.id for t in cell_trials(plan, no_nsp, "syn_agree")}


def test_each_trial_names_every_row_it_stands_behind():
    plan = _plan()
    rows = trial_rows(plan)
    assert set(rows) == {t.id for t in plan.finetune}
    for trial in plan.finetune:
        shared = trial.pretrain_id == plan.rows[0].pretrain_id
        assert rows[trial.id] == (["bert_base", "twin"] if shared else ["no_nsp"])


def test_a_shared_multitask_trial_names_its_multitask_rows():
    group = {"name": "mt", "tasks": ["syn_agree", "syn_chain"]}
    plan = _plan(multitask=[group])
    rows = trial_rows(plan)
    shared = [t for t in plan.finetune if t.multitask]
    assert len(shared) == 2 * 2  # (bert_base = twin, no_nsp) x 2 restarts
    for trial in shared:
        bert = trial.pretrain_id == plan.rows[0].pretrain_id
        assert rows[trial.id] == (["bert_base+mt", "twin+mt"] if bert else ["no_nsp+mt"])
    for trial in (t for t in plan.finetune if not t.multitask):  # multi-task cells use views
        assert rows[trial.id] in (["bert_base", "twin"], ["no_nsp"])


def test_trials_in_words_lead_with_their_rows():
    plan = _plan()
    words = trial_words(plan)
    pretraining = plan.pretrain[0]
    assert words[pretraining.id] == "bert_base, twin" == plan.describe(pretraining.id)
    trial = plan.finetune[0]
    assert words[trial.id] == (
        "bert_base, twin: syn_agree batch_size=16 learning_rate=0.001 epochs=1 restart=0"
    )
