"""NSP pair construction and MLM masking, checked against their definitions."""

from __future__ import annotations

import math
import random

from bertabl.pretrain.examples import IS_NEXT, NOT_NEXT, _truncate_pair, build_pair_examples

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


def _segments(example):
    ids = example["input_ids"]
    first_sep = ids.index(SEP)
    return ids[1:first_sep], ids[first_sep + 1 : -1]


def test_pairs_are_well_formed_and_isnext_pairs_are_consecutive():
    rng = random.Random(0)
    docs, where = _documents(300, rng)
    examples = build_pair_examples(docs, 64, random.Random(1), CLS, SEP)
    assert len(examples) > 500
    for ex in examples:
        ids = ex["input_ids"]
        assert len(ids) <= 64
        assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
        a, b = _segments(ex)
        assert a and b
        assert ex["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        assert ex["special_tokens_mask"] == [1] + [0] * len(a) + [1] + [0] * len(b) + [1]
        for segment in (a, b):  # truncation only trims ends: each segment is a contiguous run
            positions = [where[t] for t in segment]
            assert len({d for d, _ in positions}) == 1
            assert [p for _, p in positions] == list(range(positions[0][1], positions[-1][1] + 1))
        doc_a, doc_b = where[a[0]][0], where[b[0]][0]
        if ex["next_sentence_label"] == IS_NEXT:
            assert doc_a == doc_b and where[a[-1]][1] < where[b[0]][1]
        else:
            assert ex["next_sentence_label"] == NOT_NEXT
            assert doc_a != doc_b


def test_isnext_ratio_is_about_half():
    docs, _ = _documents(2000, random.Random(2))
    examples = build_pair_examples(docs, 64, random.Random(3), CLS, SEP)
    n = len(examples)
    is_next = sum(ex["next_sentence_label"] == IS_NEXT for ex in examples)
    # Each label is a fair coin: within 4 binomial standard deviations of 1/2.
    assert abs(is_next / n - 0.5) < 4 * math.sqrt(0.25 / n)


# The pair truncation's sliced form equals BERT's token-by-token loop, draw for draw.
def _bert_truncate(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """`truncate_seq_pair` from BERT's create_pretraining_data.py."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


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
        _truncate_pair(a, b, max_tokens, rng)
        assert (a, b) == (expected_a, expected_b)
        assert rng.random() == expected_rng.random()


def test_short_pairs_are_untouched():
    a, b, rng = [1, 2], [3], random.Random(0)
    _truncate_pair(a, b, 5, rng)
    assert (a, b) == ([1, 2], [3]) and rng.random() == random.Random(0).random()
