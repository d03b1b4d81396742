"""Pre-training examples: sentence pairs for MLM (+NSP), built the way BERT's release does.

Not in transformers: its collators mask tokens but do not build NSP pairs, so this module follows
`create_pretraining_data.py` from the BERT release: walk each document, gather sentences up to a
target length, split them into A and B at a random sentence boundary; half the time replace B
with sentences from a random other document (NotNext) and give the unused sentences back.
One deliberate difference: a chunk of a single sentence is split inside the sentence rather
than forced to NotNext, so IsNext stays at 50%. A small
fraction of examples use a shorter target length so the model also sees short inputs.

The `mlm` objective ("No NSP") uses the same pairs and drops only the NSP loss, so the ablation
changes exactly one thing: the loss. (The paper does not say which input format its No-NSP model
used; keeping the inputs fixed isolates the objective.)
"""

from __future__ import annotations

import random

import numpy as np

from bertabl.data.token_store import TokenStore
from bertabl.pretrain.pairs import IS_NEXT, NOT_NEXT, PairStream, truncation

__all__ = ["IS_NEXT", "NOT_NEXT", "build_pair_examples", "encode_pair"]


def build_pair_examples(
    documents: list[list[list[int]]],
    max_seq_len: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
) -> list[dict[str, list[int] | int]]:
    """One pass over `documents` (lists of tokenised sentences), in order, with `rng` -> NSP
    pair examples as dicts. Pre-training draws the same pairs lazily from a token store
    (pairs.py: PairStream); this is that algorithm over in-memory documents."""
    if len(documents) < 2:
        raise ValueError("NSP pairs need at least two documents")
    store = TokenStore.from_documents(documents)
    stream = PairStream(store, np.arange(len(documents)), max_seq_len, "", cls_id, sep_id)
    stream.short_seq_prob = short_seq_prob
    pairs: list[tuple[int, int, int, int, int]] = []
    for k in range(len(documents)):
        stream.document_pairs(k, rng, pairs)
    tokens = store.tokens.tolist()
    return [
        encode_pair(tokens[a0:a1], tokens[b0:b1], label, cls_id, sep_id)
        for a0, a1, b0, b1, label in pairs
    ]


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment, from a random end, until the pair fits (as BERT does), in
    place; the draws are BERT's, draw for draw (pairs.truncation)."""
    front_a, back_a, front_b, back_b = truncation(len(a), len(b), max_tokens, rng)
    a[:] = a[front_a : len(a) - back_a]
    b[:] = b[front_b : len(b) - back_b]


def encode_pair(a: list[int], b: list[int], label: int, cls_id: int, sep_id: int) -> dict:
    input_ids = [cls_id, *a, sep_id, *b, sep_id]
    token_type_ids = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    special = [1] + [0] * len(a) + [1] + [0] * len(b) + [1]
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "special_tokens_mask": special,
        "next_sentence_label": label,
    }
