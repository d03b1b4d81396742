"""SWAG multiple choice: encoding, segment ids, collation, and a BertForMultipleChoice step."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMultipleChoice,
    BertTokenizerFast,
    DataCollatorForMultipleChoice,
)

from bench.parity.trainer import run_swag_features
from bertabl.data.formats.swag import read_swag
from bertabl.finetune.families import multiple_choice as mc
from tests.conftest import REPO, SHARED_DATA

TESTS = REPO / "tests"
SHARED = SHARED_DATA

EXAMPLE = {
    "context": "The man sits.",
    "start": "He",
    "endings": ["runs.", "sits.", "eats.", "visited the man."],
    "label": 2,
}


@pytest.fixture(scope="module")
def tok() -> BertTokenizerFast:
    return BertTokenizerFast(
        vocab=str(TESTS / "fixtures" / "ner" / "vocab.txt"), do_lower_case=True
    )


def test_four_sequences_with_segments(tok) -> None:
    [f] = mc.encode([EXAMPLE], tok, 32)
    assert f["label"] == 2 and len(f["input_ids"]) == 4
    pieces = [tok.convert_ids_to_tokens(ids) for ids in f["input_ids"]]
    assert pieces[0] == ["[CLS]", "the", "man", "sits", ".", "[SEP]", "he", "runs", ".", "[SEP]"]
    assert pieces[3][6:] == ["he", "visited", "the", "man", ".", "[SEP]"]
    # Segment A = [CLS] context [SEP]; segment B = start + ending + the final [SEP].
    assert f["token_type_ids"][0] == [0] * 6 + [1] * 4
    assert f["token_type_ids"][3] == [0] * 6 + [1] * 6
    assert [sum(m) for m in f["attention_mask"]] == [len(ids) for ids in f["input_ids"]]


def test_empty_start_and_truncation(tok, caplog) -> None:
    [f] = mc.encode([{**EXAMPLE, "start": ""}], tok, 32)
    assert tok.convert_ids_to_tokens(f["input_ids"][0])[6:] == ["runs", ".", "[SEP]"]
    with caplog.at_level(logging.WARNING, logger="bertabl.finetune.families.multiple_choice"):
        [f] = mc.encode([EXAMPLE], tok, 8)
    assert "4 of 4 sequences truncated to max_seq_len=8" in caplog.text
    assert all(len(ids) <= 8 for ids in f["input_ids"])
    # Longest-first: context (4 pieces) and "he runs ." (3) -> 3 + 2 within 8 - 3 specials.
    assert tok.convert_ids_to_tokens(f["input_ids"][0]) == [
        "[CLS]",
        "the",
        "man",
        "sits",
        "[SEP]",
        "he",
        "runs",
        "[SEP]",
    ]


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"label": 4}, "label must be an int in 0..3"),
        ({"label": -1}, "label must be"),
        ({"label": True}, "label must be"),
        ({"label": "2"}, "label must be"),
        ({"label": None}, "label must be"),
        ({"endings": ["a", "b", "c"]}, "expected 4 endings, got 3"),
    ],
)
def test_bad_examples(tok, bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=f"example 1: {match}"):
        mc.encode([EXAMPLE, {**EXAMPLE, **bad}], tok, 32)


def test_collate_and_bert_for_multiple_choice(tok) -> None:
    examples = [
        EXAMPLE,
        {**EXAMPLE, "context": "She sits.", "label": 0},
        {**EXAMPLE, "endings": ["runs."] * 4, "label": 3},
    ]
    features = mc.encode(examples, tok, 32)
    batch = mc.collate(features, tok)
    assert batch["input_ids"].shape == batch["token_type_ids"].shape == (3, 4, 12)
    assert batch["labels"].tolist() == [2, 0, 3]
    assert batch["input_ids"][2, 0, 10:].tolist() == [tok.pad_token_id] * 2
    assert batch["attention_mask"][2, 0].tolist() == [1] * 10 + [0] * 2

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertForMultipleChoice(config)
    out = model(**batch)
    assert out.logits.shape == (3, 4)
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="empty batch"):
        mc.collate([], tok)


def test_swag_fixture_with_bert_vocab() -> None:
    vocab = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
    if not vocab.is_file():
        pytest.skip("shared BERT vocab absent")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    examples = read_swag(TESTS / "fixtures" / "formats" / "swag" / "val.csv")
    features = mc.encode(examples, tokenizer, 64)
    assert [f["label"] for f in features] == [e["label"] for e in examples]
    first = tokenizer.decode(features[0]["input_ids"][2])
    assert first == (
        "[CLS] students lower their eyes nervously. [SEP] she walks slowly towards someone. [SEP]"
    )
    assert mc.collate(features, tokenizer)["input_ids"].shape[:2] == (3, 4)


@pytest.mark.parametrize("max_length", [64, 16])  # 16 truncates every sequence
def test_batches_are_the_run_swag_recipes(tok, max_length: int) -> None:
    # Issue 27's parity bench: on the SWAG-format case bertabl and the Trainer recipe start from
    # the same weights and, dropout off, take the same steps; what they train on is pinned here,
    # against the bench's run_swag preprocessing and transformers' collator.
    examples = read_swag(TESTS / "fixtures" / "formats" / "swag" / "val.csv")
    ours = mc.collate(mc.encode(examples, tok, max_length), tok)
    columns = run_swag_features(examples, tok, max_length)
    features = [{k: column[i] for k, column in columns.items()} for i in range(len(examples))]
    theirs = DataCollatorForMultipleChoice(tok)(features)
    assert set(ours) == set(theirs)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
