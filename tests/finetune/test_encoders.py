"""Fine-tuning checkpoints of other BERT-family encoders (RoBERTa, ELECTRA's discriminator,
DistilBERT) through the same trial body: transformers' heads, the recipe's layer names, compact
embeddings and inputs the encoder does not take (DistilBERT's token_type_ids)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForMaskedLM,
    ElectraConfig,
    ElectraForPreTraining,
    RobertaConfig,
    RobertaForMaskedLM,
)

from bertabl.data import synthetic
from bertabl.finetune.epoch_loop import finetune
from bertabl.finetune.recipe import encoder_name
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.training import TrialRuntime
from tests.conftest import TINY_MATRIX

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
ENCODERS = {
    "roberta": lambda v: RobertaForMaskedLM(
        RobertaConfig(vocab_size=v, pad_token_id=0, type_vocab_size=2, intermediate_size=64,
                      max_position_embeddings=80, **SIZES)
    ),
    "electra": lambda v: ElectraForPreTraining(
        ElectraConfig(vocab_size=v, embedding_size=32, intermediate_size=64, **SIZES)
    ),
    "distilbert": lambda v: DistilBertForMaskedLM(
        DistilBertConfig(vocab_size=v, dim=32, n_layers=2, n_heads=2, hidden_dim=64, pad_token_id=0)
    ),
}  # fmt: skip


def _folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / kind
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(synthetic.lexicon().vocab()) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    ENCODERS[kind](len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_a_bert_family_checkpoint_fine_tunes_on_single_and_pair_tasks(tmp_path: Path, kind):
    folder = _folder(tmp_path, kind)
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = [{"name": kind, "from": str(folder)}]
    raw["finetune"]["recipe"] = {"layer_decay": 0.8, "freeze_layers": 1}
    plan = build_plan(validate(raw, "m.toml"), "m.toml")
    assert plan.pretrain == [] and plan.checkpoints[0].model_type == kind
    for task in ("syn_agree", "syn_chain"):
        trial = cell_trials(plan, plan.rows[0], task)[0]
        metrics = finetune(trial.config, folder, tmp_path / task, TrialRuntime(torch.device("cpu")))
        assert 0.0 <= metrics["dev_accuracy"] <= 1.0 and metrics["train_loss"] > 0


def test_encoder_names_are_read_alike_across_the_family():
    assert encoder_name("roberta.encoder.layer.1.output.dense.weight") == (
        "encoder.layer.1.output.dense.weight"
    )
    assert encoder_name("distilbert.transformer.layer.0.ffn.lin1.weight") == (
        "encoder.layer.0.ffn.lin1.weight"
    )
    assert encoder_name("classifier.weight") is None
