"""Masks drawn from (example key, position, seed): reproducible, independent of the batch."""

from __future__ import annotations

import numpy as np

from bertabl.pretrain.masking import Masker
from bertabl.pretrain.pairs import example_keys
from bertabl.training import IGNORE_INDEX
from bertabl.trial.pretrain import MaskingConfig

MASK, VOCAB = 4, 1000


class _Tokenizer:
    mask_token_id = MASK

    def __len__(self) -> int:
        return VOCAB

    def get_vocab(self) -> dict[str, int]:  # ids 500.. are ## continuations
        return {f"w{i}" if i < 500 else f"##w{i}": i for i in range(5, VOCAB)}


def _batch(rows: int = 64, width: int = 40):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, VOCAB, (rows, width))
    special = np.zeros((rows, width), dtype=bool)
    special[:, 0] = special[:, width // 2] = special[:, -1] = True
    return ids, special, np.ones((rows, width), dtype=bool), example_keys(7, rows)


def test_rows_are_masked_alike_in_any_batch_order_and_width():
    ids, special, real, keys = _batch()
    masker = Masker(_Tokenizer(), "mlm", MaskingConfig(), seed=3)
    inputs, labels = masker(ids, special, real, keys)
    order = np.random.default_rng(1).permutation(len(ids))
    wider = np.pad(ids[order], ((0, 0), (0, 8)))  # the same rows, reordered, more padding
    mask = np.pad(special[order], ((0, 0), (0, 8)))
    real_wide = np.pad(real[order], ((0, 0), (0, 8)))
    inputs2, labels2 = masker(wider, mask, real_wide, keys[order])
    assert (inputs2[:, :40] == inputs[order]).all() and (labels2[:, :40] == labels[order]).all()
    assert (labels2[:, 40:] == IGNORE_INDEX).all()  # padding is never chosen
    assert (labels[special] == IGNORE_INDEX).all()
    other = Masker(_Tokenizer(), "mlm", MaskingConfig(), seed=4)(ids, special, real, keys)[1]
    assert (other != labels).any()  # the trial's seed is part of every draw


def test_whole_words_are_chosen_together():
    ids, special, real, keys = _batch(rows=200)
    masker = Masker(_Tokenizer(), "mlm", MaskingConfig(whole_word=True), seed=0)
    _, labels = masker(ids, special, real, keys)
    chosen = labels != IGNORE_INDEX
    continuation = (ids >= 500) & ~special
    # a ## piece after a token of its word (not after [CLS]/[SEP]) shares that token's choice
    inside = continuation[:, 1:] & ~special[:, :-1]
    assert inside.sum() > 1000
    assert (chosen[:, 1:][inside] == chosen[:, :-1][inside]).all()
    ordinary = real & ~special
    assert abs(chosen.sum() / ordinary.sum() - 0.15) < 0.03
