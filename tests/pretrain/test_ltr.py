"""The left-to-right objective: causal in pre-training and still causal after fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bertabl.finetune.epoch_loop import finetune
from bertabl.finetune.heads import LeftToRightClassifier
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.pretrain.objectives.ltr import next_token_labels
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from tests.conftest import TINY_MATRIX, model_from

CPU = torch.device("cpu")
PRETRAIN = {
    "objective": "ltr",
    "model": {
        "layers": 2,
        "hidden": 32,
        "heads": 2,
        "intermediate": 64,
        "dropout": 0.0,
        "max_position": 64,
    },
}


def _changed_after(ids: torch.Tensor, t: int) -> torch.Tensor:
    other = ids.clone()
    other[:, t + 1 :] = (other[:, t + 1 :] + 7) % 50 + 5
    return other


def test_next_token_labels():
    labels = torch.tensor([[2, 10, 11, 3, -100], [2, 12, 3, -100, -100]])
    assert next_token_labels(labels).tolist() == [
        [10, 11, 3, -100, -100],
        [12, 3, -100, -100, -100],
    ]


def test_pretraining_logits_at_t_ignore_later_tokens():
    torch.manual_seed(0)
    model = model_from(PRETRAIN, vocab_size=60, pad_token_id=0).eval()
    ids = torch.randint(5, 60, (2, 12))
    t = 5
    a = model(input_ids=ids).logits
    b = model(input_ids=_changed_after(ids, t)).logits
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])  # later positions do see them


def test_fine_tuned_classifier_keeps_the_causal_mask(tmp_path: Path):
    torch.manual_seed(0)
    model_from(PRETRAIN, vocab_size=60, pad_token_id=0).save_pretrained(tmp_path)
    model = LeftToRightClassifier.from_pretrained(tmp_path, num_labels=2).eval()
    assert model.config.is_decoder
    ids = torch.randint(5, 60, (2, 12))
    mask = torch.ones_like(ids)
    t = 5
    a = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    b = model.bert(input_ids=_changed_after(ids, t), attention_mask=mask).last_hidden_state
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)
    # the head reads the last real token, which has seen the whole input
    changed_last = ids.clone()
    changed_last[:, -1] = (changed_last[:, -1] + 1) % 50 + 5
    la = model(input_ids=ids, attention_mask=mask).logits
    lb = model(input_ids=changed_last, attention_mask=mask).logits
    assert not torch.allclose(la, lb)
    # with right padding, the head reads the last non-padding position, not the padding
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(model(input_ids=padded, attention_mask=padded_mask).logits, la, atol=1e-5)


@pytest.fixture(scope="module")
def ltr_plan():
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["steps"] = 30
    raw["pretrain"]["variants"] = [{"name": "ltr", "pretrain": {"objective": "ltr"}}]
    return build_plan(validate(raw, "tiny.toml"))


def test_ltr_pretrains_and_fine_tunes(ltr_plan, tmp_path: Path):
    history = []
    runtime = TrialRuntime(CPU, report=lambda metrics: history.append(metrics))
    metrics = pretrain(ltr_plan.pretrain[0].config, tmp_path / "pt", runtime)
    assert "ltr_loss" in metrics and "mlm_loss" not in metrics
    assert metrics["ltr_perplexity"] == pytest.approx(math.exp(metrics["ltr_loss"]), rel=1e-9)
    assert runtime.history[-1]["ltr_loss"] < runtime.history[0]["ltr_loss"]  # it learns
    ft = finetune(
        ltr_plan.finetune[0].config, tmp_path / "pt" / "model", tmp_path / "ft", TrialRuntime(CPU)
    )
    assert 0.0 <= ft["dev_accuracy"] <= 1.0
