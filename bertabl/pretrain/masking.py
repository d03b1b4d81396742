"""Masked-LM masking for a `pretrain.masking` config (Table 8's MASK/RND/SAME mixes).

What is drawn is transformers' `DataCollatorForLanguageModeling`'s rule (each non-special token
chosen with `probability`; a chosen token becomes [MASK] with `mask`, a random token with
`random`, else stays) and, with `whole_word`, BERT's release's `--do_whole_word_mask` (a word and
its `##` pieces are chosen together; the MASK/RND/SAME split still per token). How it is drawn
is ours: every random number is a hash of (the example's key, the position, the trial's masking
seed) instead of the next draw of one generator over the padded batch. A data-parallel rank then
masks only the rows it trains on and gets the masks the whole batch would have had: masks do not
depend on the layout, the padding, or which rank or micro-batch an example lands in (the
collator's shared generator made every rank build and mask the whole global batch), and a
resumed run needs no generator state. It is also vectorised over the batch in numpy, where the
collator padded example by example in Python.
"""

from __future__ import annotations

import numpy as np

from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.pretrain.pairs import mix64, seed_int
from bertabl.training import IGNORE_INDEX
from bertabl.trial.pretrain import MaskingConfig, Objective

_STEP = np.uint64(0x9E3779B97F4A7C15)
_LOW = np.uint64(0xFFFFFFFF)
_UNIT = 1.0 / 2**32


class Masker:
    """Masks batches of encoded pairs for one objective (one that does not mask, e.g. the
    left-to-right LM: labels = inputs)."""

    def __init__(self, tokenizer, objective: Objective, masking: MaskingConfig, seed: int):
        self.mlm = OBJECTIVES[objective].masks
        self.vocab_size = len(tokenizer)
        self.mask_id = tokenizer.mask_token_id
        self.probability = masking.probability
        self.mask, self.random = masking.mask, masking.random
        self.salt = np.uint64(seed_int(f"{seed}/masking"))
        self.continuation = None
        if masking.whole_word:
            continuation = np.zeros(self.vocab_size, dtype=bool)
            for token, index in tokenizer.get_vocab().items():
                if token.startswith("##") and index < self.vocab_size:
                    continuation[index] = True
            self.continuation = continuation

    def __call__(
        self, input_ids: np.ndarray, special: np.ndarray, real: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(masked input ids, labels) of a batch: `input_ids` [rows, width], `special` marks
        [CLS]/[SEP], `real` every non-padding position, `keys` one uint64 per row."""
        if not self.mlm:
            return input_ids, np.where(real, input_ids, IGNORE_INDEX)
        bits = self._bits(keys, input_ids.shape[1])
        choose = (bits >> np.uint64(32)).astype(np.float64) * _UNIT
        split = (bits & _LOW).astype(np.float64) * _UNIT
        maskable = real & ~special
        if self.continuation is None:
            chosen = maskable & (choose < self.probability)
        else:
            # a word = a start token and the ## pieces after it: one draw, at its start, for all
            starts = maskable & ~self.continuation[input_ids]
            positions = np.arange(input_ids.shape[1])
            word = np.maximum.accumulate(np.where(starts, positions, -1), axis=1)
            word_draw = np.take_along_axis(choose, np.maximum(word, 0), axis=1)
            chosen = maskable & (word >= 0) & (word_draw < self.probability)
        labels = np.where(chosen, input_ids, IGNORE_INDEX)
        inputs = input_ids.copy()
        inputs[chosen & (split < self.mask)] = self.mask_id
        randomised = chosen & (split >= self.mask) & (split < self.mask + self.random)
        if randomised.any():
            drawn = mix64(bits[randomised] ^ self.salt) % np.uint64(self.vocab_size)
            inputs[randomised] = drawn.astype(np.int64)
        return inputs, labels

    def _bits(self, keys: np.ndarray, width: int) -> np.ndarray:
        """64 random bits for every (row, position), from the row's key and the position."""
        with np.errstate(over="ignore"):
            positions = mix64(self.salt + np.arange(1, width + 1, dtype=np.uint64) * _STEP)
            return mix64(keys[:, None] ^ positions[None, :])
