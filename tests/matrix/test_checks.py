"""Plan-time checks of what only resolved trials can tell (matrix/checks.py)."""

from __future__ import annotations

import pytest

from bertabl.errors import MatrixError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from tests.conftest import TINY_MATRIX, fixture_copies


def test_a_left_to_right_model_is_refused_for_multiple_choice(tmp_path):
    swag = fixture_copies(tmp_path / "swag", "swag/val.csv", ("train.csv", "val.csv"))
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"]["swag_dir"] = str(swag)
    raw["finetune"]["tasks"] = ["swag"]
    build_plan(validate(raw, "m.toml"))  # bidirectional rows: fine
    raw["pretrain"]["variants"] = [{"name": "ltr", "pretrain": {"objective": "ltr"}}]
    with pytest.raises(MatrixError, match="task swag: multiple choice scores each candidate"):
        build_plan(validate(raw, "m.toml"))


def test_bertabls_own_heads_need_a_bert_encoder(tmp_path):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    folder = tmp_path / "distil"
    DistilBertForMaskedLM(
        DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    ).save_pretrained(folder)
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = [
        {"name": "d", "from": str(folder), "finetune": {"head": "bilstm"}}
    ]
    with pytest.raises(MatrixError, match="head = 'bilstm' needs a BERT encoder; .* distilbert"):
        build_plan(validate(raw, "m.toml"))
