"""A finished fine-tune's kept model scored on a test split (bertabl/finetune/test_splits.py).

Known answer: with eng.testb a copy of eng.testa, the test score must equal the trial's last dev
score exactly: the same kept weights on the same sentences."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bertabl.finetune.epoch_loop import finetune
from bertabl.finetune.test_splits import score_kept
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from tests.conftest import FIXTURES, TINY_MATRIX

CPU = torch.device("cpu")


@pytest.mark.parametrize("head", ["linear", "features"])
def test_a_tagging_test_split_scores_like_dev_on_the_same_sentences(head: str, tmp_path: Path):
    conll = tmp_path / "conll"
    shutil.copytree(FIXTURES / "report" / "conll", conll)
    shutil.copy(conll / "eng.testa", conll / "eng.testb")
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"] |= {"conll_dir": str(conll), "tokenizer": str(FIXTURES / "ner" / "vocab.txt")}
    raw["pretrain"]["variants"] = [{"name": "v", "pretrain": {"objective": "mlm_nsp"}}]
    raw["finetune"] |= {"tasks": ["conll2003"], "max_seq_len": 64, "restarts": 1, "head": head}
    if head == "features":  # the frozen-encoder path: only the splits asked for are encoded
        raw["finetune"]["features"] = "last_hidden"
    trial = build_plan(validate(raw, "m.toml"), "m.toml")
    pretrain(trial.pretrain[0].config, tmp_path / "pt", TrialRuntime(CPU))
    config = trial.finetune[0].config
    out = tmp_path / "ft"
    metrics = finetune(config, tmp_path / "pt" / "model", out, TrialRuntime(CPU))

    scored = score_kept(config, tmp_path / "pt" / "model", out, ["test"], TrialRuntime(CPU))
    assert scored["test"].metrics["f1"] == metrics["dev_f1"]
    assert (out / "predictions" / "test.jsonl").is_file()
