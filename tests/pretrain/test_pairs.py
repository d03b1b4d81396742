"""Lazy pairs: BERT's pair semantics over a token store, a pass = a seeded permutation cut into
blocks, and any position reachable by rebuilding one block."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bertabl.data.token_store import TokenStore
from bertabl.errors import DataError
from bertabl.pretrain import pairs
from bertabl.pretrain.pairs import IS_NEXT, NOT_NEXT, PairStream, truncation

CLS, SEP = 2, 3


def _documents(n_docs: int, rng: random.Random):
    """Documents whose every token id is unique: id -> (document, position in document)."""
    where, docs, next_id = {}, [], 10
    for d in range(n_docs):
        doc, position = [], 0
        for _ in range(rng.randint(2, 12)):
            sentence = []
            for _ in range(rng.randint(3, 15)):
                sentence.append(next_id)
                where[next_id] = (d, position)
                next_id += 1
                position += 1
            doc.append(sentence)
        docs.append(doc)
    return docs, where


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


def _one_pass(n_docs: int, docs_seed: int, pass_seed: int):
    """BERT's walk over every document in order with one RNG (create_pretraining_data.py's
    loop), as (pairs, token -> (document, position))."""
    docs, where = _documents(n_docs, random.Random(docs_seed))
    stream = PairStream(TokenStore.from_documents(docs), np.arange(n_docs), 64, "", CLS, SEP)
    rows: list[tuple[int, int, int, int, int]] = []
    rng = random.Random(pass_seed)
    for k in range(n_docs):
        stream.document_pairs(k, rng, rows)
    return rows, stream.store.tokens.tolist(), where


def test_a_walk_over_the_documents_gives_berts_pairs():
    rows, tokens, where = _one_pass(300, 0, 1)
    assert len(rows) > 500
    for a0, a1, b0, b1, label in rows:
        a, b = tokens[a0:a1], tokens[b0:b1]
        assert a and b and len(a) + len(b) <= 64 - 3
        for segment in (a, b):  # truncation only trims ends: each segment is a contiguous run
            positions = [where[t] for t in segment]
            assert len({d for d, _ in positions}) == 1
            assert [p for _, p in positions] == list(range(positions[0][1], positions[-1][1] + 1))
        doc_a, doc_b = where[a[0]][0], where[b[0]][0]
        if label == IS_NEXT:
            assert doc_a == doc_b and where[a[-1]][1] < where[b[0]][1]
        else:
            assert label == NOT_NEXT and doc_a != doc_b


def test_isnext_ratio_is_about_half():
    rows, _, _ = _one_pass(2000, 2, 3)
    n = len(rows)
    is_next = sum(label == IS_NEXT for *_, label in rows)
    # Each label is a fair coin: within 4 binomial standard deviations of 1/2.
    assert abs(is_next / n - 0.5) < 4 * math.sqrt(0.25 / n)


# The pair truncation's counted form equals BERT's token-by-token loop, draw for draw.
def _bert_truncate(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """`truncate_seq_pair` from BERT's create_pretraining_data.py."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _truncated(a: list[int], b: list[int], max_tokens: int, rng: random.Random):
    front_a, back_a, front_b, back_b = truncation(len(a), len(b), max_tokens, rng)
    return a[front_a : len(a) - back_a], b[front_b : len(b) - back_b]


def test_truncation_matches_bert_and_leaves_the_rng_in_the_same_state():
    cases = random.Random(0)
    for _ in range(500):
        a = list(range(cases.randint(0, 300)))
        b = list(range(1000, 1000 + cases.randint(0, 300)))
        max_tokens = cases.randint(1, 200)
        seed = cases.random()
        expected_a, expected_b, expected_rng = list(a), list(b), random.Random(seed)
        _bert_truncate(expected_a, expected_b, max_tokens, expected_rng)
        rng = random.Random(seed)
        assert _truncated(a, b, max_tokens, rng) == (expected_a, expected_b)
        assert rng.random() == expected_rng.random()


def test_short_pairs_are_untouched():
    rng = random.Random(0)
    assert truncation(2, 1, 5, rng) == (0, 0, 0, 0)
    assert rng.random() == random.Random(0).random()
