"""The pair truncation's sliced form equals BERT's token-by-token loop, draw for draw."""

from __future__ import annotations

import random

from bertabl.pretrain.examples import _truncate_pair


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
