"""Lazy pairs: BERT's pair semantics over a token store, a pass = a seeded permutation cut into
blocks, and any position reachable by rebuilding one block."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bertabl.data.token_store import TokenStore
from bertabl.errors import DataError
from bertabl.pretrain import pairs
from bertabl.pretrain.pairs import IS_NEXT, NOT_NEXT, PairStream
from tests.pretrain.test_examples import _documents

CLS, SEP = 2, 3


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(pairs, "BLOCK_TOKENS", 500)


def _stream(n_docs: int = 200, seq_len: int = 64, tag: str = "t"):
    docs, where = _documents(n_docs, random.Random(0))
    store = TokenStore.from_documents(docs)
    return PairStream(store, np.arange(n_docs), seq_len, tag, CLS, SEP), where


def test_pairs_keep_berts_semantics(small_blocks):
    stream, where = _stream()
    tokens = stream.store.tokens
    rows = np.concatenate([stream.block(0, b)[0] for b in range(stream.blocks(0))])
    assert len(rows) > 300
    for a0, a1, b0, b1, label in rows.tolist():
        assert a1 > a0 and b1 > b0 and (a1 - a0) + (b1 - b0) <= 64 - 3
        a, b = [where[t] for t in tokens[a0:a1]], [where[t] for t in tokens[b0:b1]]
        assert len({d for d, _ in a}) == 1 and len({d for d, _ in b}) == 1  # contiguous runs
        if label == IS_NEXT:
            assert a[0][0] == b[0][0] and a[-1][1] < b[0][1]
        else:
            assert label == NOT_NEXT and a[0][0] != b[0][0]
    is_next = (rows[:, 4] == IS_NEXT).mean()
    assert abs(is_next - 0.5) < 4 * np.sqrt(0.25 / len(rows))


def test_a_pass_is_a_permutation_cut_into_blocks(small_blocks):
    stream, _ = _stream()
    order, starts = stream.order(0)
    assert sorted(order.tolist()) == list(range(200)) and starts[0] == 0
    before = np.cumsum(stream.doc_lengths[order]) - stream.doc_lengths[order]
    assert (np.diff(before[starts]) >= pairs.BLOCK_TOKENS - stream.doc_lengths.max()).all()
    assert stream.blocks(0) > 10
    assert stream.order(1)[0].tolist() != order.tolist()  # a new permutation every pass
    other, _ = _stream(tag="other")
    assert other.order(0)[0].tolist() != order.tolist()  # and every stream (seed, phase)


def test_resume_at_any_position_rebuilds_one_block(small_blocks, monkeypatch):
    stream, _ = _stream(n_docs=40)
    cursor = stream.cursor()
    straight = [cursor.take(7) for _ in range(80)]  # several passes of several blocks
    assert cursor.position[0] >= 2
    built = []
    original = PairStream.block
    monkeypatch.setattr(
        PairStream, "block", lambda self, p, b: built.append((p, b)) or original(self, p, b)
    )
    cursor = stream.cursor()
    positions = []
    for _ in range(80):
        positions.append(cursor.position)
        cursor.take(7)
    for index in (0, 13, 41, 79):
        built.clear()
        resumed = stream.cursor(positions[index])
        assert built == [positions[index][:2]]  # one block rebuilt, not the pass
        for expected_rows, expected_keys in straight[index : index + 3]:
            rows, keys = resumed.take(7)
            assert (rows == expected_rows).all() and (keys == expected_keys).all()


def test_keys_are_distinct(small_blocks):
    stream, _ = _stream()
    cursor = stream.cursor()
    keys = np.concatenate([cursor.take(100)[1] for _ in range(20)])
    assert len(np.unique(keys)) == len(keys)


def test_one_pass_ends(small_blocks):
    stream, _ = _stream(n_docs=30)
    total = sum(len(stream.block(0, b)[0]) for b in range(stream.blocks(0)))
    rows, _ = stream.cursor().take(10 * total, one_pass=True)
    assert len(rows) == total


def test_a_corpus_without_pairs_is_a_data_error():
    store = TokenStore.from_documents([[[]], [[]], [[]]])  # documents without tokens
    stream = PairStream(store, np.arange(3), 64, "t", CLS, SEP)
    with pytest.raises(DataError, match="no pre-training pairs"):
        stream.cursor().take(8)
