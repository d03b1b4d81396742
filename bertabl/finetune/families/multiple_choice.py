"""Multiple choice (SWAG, BERT paper Sec. 4.4), for transformers' `AutoModelForMultipleChoice`.

Each example becomes four sequences `[CLS] context [SEP] start ending [SEP]`: segment A is the
given sentence (sent1), segment B the second sentence's start (sent2) joined to one candidate
ending. The model scores each sequence with a vector dotted with its [CLS] representation; a
softmax over the four scores is the prediction (its argmax), as in the paper.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForMultipleChoice

from bertabl.finetune.families.base import FamilyData

log = logging.getLogger(__name__)

NUM_CHOICES = 4
_CHUNK = 1024  # examples per tokenizer call: batched calls are much faster than one per example


def _check(example: dict, n: int) -> None:
    endings, label = example.get("endings"), example.get("label")
    if not isinstance(endings, (list, tuple)) or len(endings) != NUM_CHOICES:
        got = len(endings) if isinstance(endings, (list, tuple)) else type(endings).__name__
        raise ValueError(
            f"multiple_choice.encode: example {n}: expected {NUM_CHOICES} endings, got {got}"
        )
    # bool is an int subclass: True would silently mean ending 1.
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_CHOICES:
        raise ValueError(
            f"multiple_choice.encode: example {n}: label must be an int in "
            f"0..{NUM_CHOICES - 1} (the index of the correct ending), got {label!r}"
        )


def encode(examples: Sequence[dict], tokenizer: Any, max_seq_len: int) -> list[dict]:
    """`read_swag` dicts -> features {input_ids, token_type_ids, attention_mask: [4][len], label}.

    A pair longer than max_seq_len is cut longest-first (the longer segment loses a token at a
    time), as BERT's `_truncate_seq_pair`; the number of truncated sequences is logged.
    """
    if max_seq_len < 5:
        raise ValueError(f"multiple_choice.encode: max_seq_len must be >= 5, got {max_seq_len}")
    for n, example in enumerate(examples):
        _check(example, n)
    features: list[dict] = []
    truncated = 0
    for start in range(0, len(examples), _CHUNK):
        chunk = examples[start : start + _CHUNK]
        firsts = [e["context"] for e in chunk for _ in range(NUM_CHOICES)]
        # " ".join over non-empty parts: an empty sent2 must not leave a leading space behind.
        seconds = [
            " ".join(p for p in (e["start"], ending) if p) for e in chunk for ending in e["endings"]
        ]
        enc = tokenizer(
            firsts,
            seconds,
            truncation="longest_first",
            max_length=max_seq_len,
            return_token_type_ids=True,  # zeros from tokenizers without segments (RoBERTa's)
        )
        truncated += sum(bool(e.overflowing) for e in enc.encodings)
        for i, example in enumerate(chunk):
            rows = slice(i * NUM_CHOICES, (i + 1) * NUM_CHOICES)
            feature = {
                key: [list(x) for x in enc[key][rows]]
                for key in ("input_ids", "token_type_ids", "attention_mask")
            }
            feature["label"] = example["label"]
            features.append(feature)
    if truncated:
        log.warning(
            "multiple_choice.encode: %d of %d sequences truncated to max_seq_len=%d",
            truncated,
            NUM_CHOICES * len(examples),
            max_seq_len,
        )
    return features


def collate(
    features: Sequence[dict], tokenizer: Any, multiple: int | None = None
) -> dict[str, torch.Tensor]:
    """Pad to [batch, 4, longest sequence in the batch (rounded up to a multiple of
    `multiple`)]; labels [batch]."""
    if not features:
        raise ValueError("multiple_choice.collate: empty batch")
    longest = max(len(ids) for f in features for ids in f["input_ids"])
    if multiple:
        longest = -(-longest // multiple) * multiple
    pads = {"input_ids": tokenizer.pad_token_id, "token_type_ids": 0, "attention_mask": 0}
    out = {
        key: torch.tensor(
            [[list(row) + [pad] * (longest - len(row)) for row in f[key]] for f in features],
            dtype=torch.long,
        )
        for key, pad in pads.items()
    }
    out["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
    return out


class MultipleChoice(FamilyData):
    def encode(self, rows, split: str) -> list[dict]:
        return encode(list(rows), self.tokenizer, self.config.max_seq_len)

    def _collate(self, items: list) -> dict[str, torch.Tensor]:
        return collate(items, self.tokenizer, self.pad_multiple)

    def _build(self) -> torch.nn.Module:
        return AutoModelForMultipleChoice.from_pretrained(self.pretrained_dir)
