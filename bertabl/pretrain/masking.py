"""The masked-LM collator for a `pretrain.masking` config (Table 8's MASK/SAME/RND mixes).

Token-level masking is transformers' `DataCollatorForLanguageModeling` with its own options
(`mlm_probability`, `mask_replace_prob`, `random_replace_prob`). Whole-word masking is the one
piece written here: transformers' whole-word path needs character offsets (our examples are built
from token ids) and forces every chosen token to [MASK] (no RND/SAME), which would make the mixes
of Table 8 impossible with whole words. Here words are found from WordPiece's `##` prefix, chosen
with the masking probability per word, and the MASK/RND/SAME split is drawn per token as in the
BERT release's `create_pretraining_data.py --do_whole_word_mask`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from bertabl.training import IGNORE_INDEX
from bertabl.trial.pretrain import MaskingConfig


class WholeWordMaskingCollator(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling` choosing whole words; the token split is unchanged."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, **kwargs: Any):
        super().__init__(tokenizer, **kwargs)
        continuation = torch.zeros(len(tokenizer), dtype=torch.bool)
        for token, index in tokenizer.get_vocab().items():
            if token.startswith("##") and index < len(continuation):
                continuation[index] = True
        self.continuation = continuation

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        labels = inputs.clone()
        if special_tokens_mask is None:
            special_tokens_mask = torch.tensor(
                [
                    self.tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                    for row in labels.tolist()
                ]
            )
        special = special_tokens_mask.bool()
        starts = ~special & ~self.continuation[inputs]
        # A word = a start token and the ## tokens after it; word ids are 1-based per row, 0 for
        # specials, so one draw per word id decides the whole word.
        word_ids = torch.cumsum(starts, dim=1) * (~special)
        draws = torch.bernoulli(
            torch.full((inputs.shape[0], inputs.shape[1] + 1), self.mlm_probability),
            generator=self.generator,
        ).bool()
        draws[:, 0] = False  # id 0 (specials) is never chosen
        chosen = torch.gather(draws, 1, word_ids)
        labels[~chosen] = IGNORE_INDEX

        # The MASK/RND/SAME split per chosen token, exactly as the parent class draws it.
        replaced = (
            torch.bernoulli(
                torch.full(labels.shape, self.mask_replace_prob), generator=self.generator
            ).bool()
            & chosen
        )
        inputs[replaced] = self.tokenizer.mask_token_id
        if self.mask_replace_prob == 1 or self.random_replace_prob == 0:
            return inputs, labels
        scaled = self.random_replace_prob / (1 - self.mask_replace_prob)
        randomised = (
            torch.bernoulli(torch.full(labels.shape, scaled), generator=self.generator).bool()
            & chosen
            & ~replaced
        )
        words = torch.randint(
            len(self.tokenizer), labels.shape, dtype=torch.long, generator=self.generator
        )
        inputs[randomised] = words[randomised]
        return inputs, labels


def masking_collator(
    tokenizer: PreTrainedTokenizerBase, objective: str, masking: MaskingConfig, seed: int
) -> DataCollatorForLanguageModeling:
    """The collator for `objective` ("ltr": no masking, labels = inputs) with a seeded generator."""
    kind = WholeWordMaskingCollator if masking.whole_word else DataCollatorForLanguageModeling
    collator = kind(
        tokenizer,
        mlm=objective != "ltr",  # LTR predicts every next token: no masking
        mlm_probability=masking.probability,
        mask_replace_prob=masking.mask,
        random_replace_prob=masking.random,
        seed=seed,
    )
    # Created now (not on first call) so its state can be saved/restored; not by `create_rng`,
    # which refuses to seed in any process but the main one (data-parallel ranks are not).
    collator.generator = collator.get_generator(seed)
    return collator
