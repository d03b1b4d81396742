"""Batches per rank: encoding of pair rows, rows of one rank, masks that ignore the layout,
and the prefetch thread."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bertabl.data.token_store import TokenStore
from bertabl.pretrain.batches import Prefetcher, collate, encode_rows, rank_steps
from bertabl.pretrain.masking import Masker
from bertabl.pretrain.pairs import PairStream
from bertabl.training import IGNORE_INDEX
from bertabl.trial.layout import batch_layout
from bertabl.trial.pretrain import MaskingConfig
from tests.pretrain.test_pairs import _documents

CLS, SEP, PAD, MASK = 2, 3, 0, 4
IDS = (CLS, SEP, PAD)


class _Tokenizer:
    mask_token_id = MASK

    def __len__(self) -> int:
        return 5000

    def get_vocab(self) -> dict[str, int]:
        return {"[MASK]": MASK, "##x": 4999}


def _stream() -> PairStream:
    docs, _ = _documents(60, random.Random(0))
    return PairStream(TokenStore.from_documents(docs), np.arange(60), 48, "t", CLS, SEP)


def _masker(objective: str = "mlm_nsp") -> Masker:
    return Masker(_Tokenizer(), objective, MaskingConfig(), seed=0)


def encode_pair(a: list[int], b: list[int], label: int, cls_id: int, sep_id: int) -> dict:
    """BERT's input for segments A and B: [CLS] A [SEP] B [SEP], segment ids 0 then 1."""
    return {
        "input_ids": [cls_id, *a, sep_id, *b, sep_id],
        "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
        "special_tokens_mask": [1] + [0] * len(a) + [1] + [0] * len(b) + [1],
        "next_sentence_label": label,
    }


def test_rows_encode_as_berts_pairs():
    stream = _stream()
    rows, _ = stream.block(0, 0)
    rows = rows[:20]
    encoded = encode_rows(stream.store.tokens, rows, *IDS)
    tokens = stream.store.tokens.tolist()
    width = encoded["input_ids"].shape[1]
    for row, (a0, a1, b0, b1, label) in enumerate(rows.tolist()):
        pair = encode_pair(tokens[a0:a1], tokens[b0:b1], label, CLS, SEP)
        n = len(pair["input_ids"])
        pad = width - n
        assert encoded["input_ids"][row].tolist() == pair["input_ids"] + [PAD] * pad
        assert encoded["token_type_ids"][row].tolist() == pair["token_type_ids"] + [0] * pad
        assert encoded["attention_mask"][row].tolist() == [1] * n + [0] * pad
        assert (
            encoded["special"][row].tolist()
            == [bool(s) for s in pair["special_tokens_mask"]] + [False] * pad
        )
    longest = int((rows[:, 1] - rows[:, 0] + rows[:, 3] - rows[:, 2]).max()) + 3
    assert width == longest  # padded to the longest pair


def test_masks_depend_on_the_example_not_on_its_batch():
    stream = _stream()
    rows, keys = stream.cursor().take(16)
    whole = collate(stream.store.tokens, rows, keys, IDS, _masker(), "mlm_nsp")
    for part in (slice(0, 4), slice(4, 12), slice(12, 16)):
        alone = collate(stream.store.tokens, rows[part], keys[part], IDS, _masker(), "mlm_nsp")
        width = alone["input_ids"].shape[1]
        for key in ("input_ids", "labels", "token_type_ids", "attention_mask"):
            got, expected = alone[key], whole[key][part]
            assert torch.equal(got, expected[:, :width]), key  # same masks, own padding
            assert (expected[:, width:] == (IGNORE_INDEX if key == "labels" else 0)).all()
    assert (whole["labels"] != IGNORE_INDEX).float().mean() > 0.05
    # the flat masked positions index this micro-batch's own labels
    flat = whole["labels"].flatten()
    positions = collate(stream.store.tokens, rows, keys, IDS, _masker(), "mlm", positions=True)
    assert torch.equal(positions["masked_positions"], (flat != IGNORE_INDEX).nonzero().squeeze(1))
    assert "next_sentence_label" not in positions


def test_each_rank_builds_its_own_rows_of_the_same_global_batch():
    stream, layout = _stream(), batch_layout(8, 2, 2)
    global_rows, global_keys = stream.cursor().take(8)
    everyone = collate(stream.store.tokens, global_rows, global_keys, IDS, _masker(), "mlm_nsp")
    for rank in (0, 1):
        micro, masked, position = next(
            rank_steps(stream.cursor(), layout, rank, _masker(), "mlm_nsp", IDS)
        )
        assert len(micro) == 2 and position == (0, 0, 8)
        for part, batch in zip(layout.rows(rank), micro, strict=True):
            width = batch["input_ids"].shape[1]
            assert torch.equal(batch["input_ids"], everyone["input_ids"][part][:, :width])
            assert torch.equal(batch["next_sentence_label"], everyone["next_sentence_label"][part])
        mine = slice(rank * 4, rank * 4 + 4)
        assert masked == int((everyone["labels"][mine] != IGNORE_INDEX).sum())


def test_ltr_labels_are_the_next_tokens():
    stream = _stream()
    rows, keys = stream.cursor().take(4)
    batch = collate(stream.store.tokens, rows, keys, IDS, _masker("ltr"), "ltr")
    plain = encode_rows(stream.store.tokens, rows, *IDS)["input_ids"]
    assert torch.equal(batch["input_ids"], torch.from_numpy(plain))
    real = batch["attention_mask"].bool()
    assert torch.equal(batch["labels"][:, :-1][real[:, 1:]], batch["input_ids"][:, 1:][real[:, 1:]])
    assert (batch["labels"][:, -1] == IGNORE_INDEX).all()


def test_the_prefetcher_hands_over_steps_in_order_and_errors_too():
    def steps():
        for i in range(5):
            yield [{"x": torch.tensor([i])}], i, (0, 0, i)
        raise ValueError("data broke")

    prefetched = Prefetcher(steps(), depth=2)
    assert [next(prefetched)[1] for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="data broke"):
        next(prefetched)
    prefetched.close()

    endless = Prefetcher(iter(lambda: ([], 0, (0, 0, 0)), None), depth=2)
    next(endless)
    endless.close()  # stops a thread blocked on a full queue
    assert not endless.thread.is_alive()
