"""Scale presets: the `paper` preset is the paper's recipe, checked against the verified
reference file; presets fill only what a matrix leaves out."""

from __future__ import annotations

import pytest

from bertabl.io import tomllib
from bertabl.matrix.load import load_matrix
from bertabl.matrix.presets import PAPER
from tests.conftest import REPO, SHARED_DATA


def _reference() -> dict:
    return tomllib.loads((SHARED_DATA.parent / "paper_reference.toml").read_text())


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared is not present")
def test_paper_preset_is_the_papers_recipe():
    reference = _reference()
    pre, base = reference["pretraining"], reference["models"]["bert_base"]
    pt = PAPER["pretrain"]
    assert (pt["model"]["layers"], pt["model"]["hidden"], pt["model"]["heads"]) == (
        base["layers"],
        base["hidden"],
        base["heads"],
    )
    assert pt["steps"] == pre["steps"] and pt["batch_size"] == pre["batch_sequences"]
    assert pt["max_seq_len"] == pre["max_seq_len"]
    assert [(p["seq_len"], p["fraction"]) for p in pt["seq_len_schedule"]] == [
        (p["seq_len"], p["fraction_of_steps"]) for p in pre["seq_len_schedule"]
    ]
    assert pt["learning_rate"] == pre["learning_rate"]
    assert pt["warmup_fraction"] * pt["steps"] == pre["warmup_steps"]
    assert (pt["adam_beta1"], pt["adam_beta2"]) == (pre["adam_beta1"], pre["adam_beta2"])
    assert pt["weight_decay"] == pre["weight_decay_l2"] and pt["model"]["dropout"] == pre["dropout"]
    from bertabl.trial.pretrain import MaskingConfig

    masking = MaskingConfig()  # the schema's defaults are the paper's
    assert (masking.probability, masking.mask, masking.random, masking.same) == (
        pre["mlm_select_prob"],
        pre["mlm_mask_prob"],
        pre["mlm_random_prob"],
        pre["mlm_keep_prob"],
    )
    glue = reference["finetuning"]["glue"]
    grid = PAPER["finetune"]["grid"]
    assert grid == {
        "batch_size": [glue["batch_size"]],
        "learning_rate": glue["learning_rates"],
        "epochs": [glue["epochs"]],
    }


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared is not present")
def test_paper_preset_gives_each_task_the_papers_protocol():
    finetuning = _reference()["finetuning"]
    settings = PAPER["finetune"]["task_settings"]
    for task, key in (("squad_v1", "squad_v11"), ("squad_v2", "squad_v20"), ("swag", "swag")):
        paper = finetuning[key]
        assert settings[task]["grid"] == {
            "batch_size": [paper["batch_size"]],
            "learning_rate": [paper["learning_rate"]],
            "epochs": [paper["epochs"]],
        }
    # 384-token windows 128 apart: the BERT release's run_squad.py (the paper gives no lengths)
    for task in ("squad_v1", "squad_v2"):
        assert (settings[task]["max_seq_len"], settings[task]["doc_stride"]) == (384, 128)
    assert finetuning["conll2003_ner"]["context"] == "maximal document context"
    assert settings["conll2003"]["document_context"] is True


def test_table5_at_paper_scale_runs_squad_as_the_paper_did():
    matrix, _ = load_matrix(REPO / "matrices" / "table5.toml")
    squad, mrpc = matrix.finetune.protocol("squad_v1"), matrix.finetune.protocol("mrpc")
    assert (squad.max_seq_len, squad.doc_stride, squad.grid.learning_rate) == (384, 128, [5e-5])
    assert (mrpc.max_seq_len, mrpc.grid.learning_rate) == (128, [5e-5, 4e-5, 3e-5, 2e-5])
    assert set(matrix.finetune.task_settings) == {"squad_v1"}  # the preset's others: dropped
