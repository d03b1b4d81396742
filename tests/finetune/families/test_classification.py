"""Sentence(-pair) classification: BERT's [CLS] A [SEP] B [SEP] inputs, batches padded to their
longest, lengths for a BiLSTM, and the head each row asks for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from bertabl.data.tokenizer import build_tokenizer
from bertabl.finetune.families.classification import Classification, with_lengths
from bertabl.finetune.heads import BiLSTMClassifier, LeftToRightClassifier
from bertabl.finetune.pooling import PooledClassifier
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.tasks.catalogue import spec_of
from bertabl.training import TrialRuntime
from tests.conftest import TINY_MATRIX

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """syn_chain (sentence pairs) read and encoded for one TINY_MATRIX trial, beside a tiny
    saved encoder and its tokenizer."""
    folder = tmp_path_factory.mktemp("model")
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    trial = next(t for t in plan.finetune if t.task == "syn_chain")
    tokenizer = build_tokenizer(plan.pretrain[0].config.data, folder / "vocab")
    sizes = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = BertConfig(vocab_size=len(tokenizer), intermediate_size=32, **sizes)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    spec = spec_of(trial.task, trial.config.task_data)
    data = Classification(spec, trial.config, trial.config.task_data, tokenizer, folder,
                          TrialRuntime(CPU))  # fmt: skip
    return data, tokenizer, folder


def test_a_pair_is_berts_two_segments(chain):
    data, tokenizer, _ = chain
    raw, item = data.raw["dev"][0], data.encoded["dev"][0]
    a = tokenizer.convert_tokens_to_ids(raw["text_a"].split())  # synthetic words: a token each
    b = tokenizer.convert_tokens_to_ids(raw["text_b"].split())
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert item["input_ids"] == [cls, *a, sep, *b, sep]
    assert item["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert item["attention_mask"] == [1] * len(item["input_ids"])
    assert item["labels"] == raw["label"]
    assert len(data.train) == 64 and len(data.encoded["dev"]) == 32  # TINY_MATRIX's sizes
    assert data.lengths == [len(x["input_ids"]) for x in data.train]


def test_a_batch_pads_to_its_longest_and_a_bilstm_gets_the_lengths(chain):
    data, tokenizer, _ = chain
    full = data.encoded["dev"][1]
    cut = {k: v[:12] if isinstance(v, list) else v for k, v in full.items()}  # a shorter pair
    items = [cut, full]
    short, long = 12, len(full["input_ids"])
    assert short < long
    batch = data.collate(items)
    assert batch["input_ids"].shape == (2, long)
    assert batch["attention_mask"].sum(-1).tolist() == [short, long]
    assert batch["input_ids"][0, short:].tolist() == [tokenizer.pad_token_id] * (long - short)
    assert batch["labels"].tolist() == [x["labels"] for x in items]
    assert with_lengths(batch)["lengths"].tolist() == [short, long]


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({}, BertForSequenceClassification),  # BERT's own head, [CLS] through the pooler
        ({"head": "bilstm", "bilstm_hidden": 8}, BiLSTMClassifier),
        ({"recipe": {"pooling": "mean"}}, PooledClassifier),
        ({"is_decoder": True}, LeftToRightClassifier),  # an `ltr` model: the last token
    ],
)
def test_each_row_gets_its_head(chain, settings: dict, kind, tmp_path: Path):
    data, _, folder = chain
    if settings.pop("is_decoder", False):
        decoder = BertModel.from_pretrained(folder)
        decoder.config.is_decoder = True
        decoder.save_pretrained(tmp_path)
        folder = tmp_path
    config = data.config
    if "recipe" in settings:
        settings["recipe"] = config.recipe.model_copy(update=settings["recipe"])
    shaped = Classification.__new__(Classification)  # the same data, another trial's settings
    shaped.__dict__ |= data.__dict__ | {"pretrained_dir": folder}
    shaped.config = config.model_copy(update=settings)
    model = shaped.build_model()
    assert type(model) is kind
    logits = model(**shaped.collate(data.encoded["dev"][:3])).logits
    assert logits.shape == (3, 2)  # syn_chain's two classes
