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

IS_NEXT, NOT_NEXT = 0, 1  # transformers' BertForPreTraining label convention


def build_pair_examples(
    documents: list[list[list[int]]],
    max_seq_len: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
) -> list[dict[str, list[int] | int]]:
    """One pass over `documents` (lists of tokenised sentences) -> NSP pair examples."""
    if len(documents) < 2:
        raise ValueError("NSP pairs need at least two documents")
    max_tokens = max_seq_len - 3  # [CLS] A [SEP] B [SEP]
    examples = []
    for doc_index, document in enumerate(documents):
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk: list[list[int]] = []
        length = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i])
            if i == len(document) - 1 or length >= target:
                label = IS_NEXT if rng.random() < 0.5 else NOT_NEXT
                if len(chunk) == 1 and len(chunk[0]) < 2:
                    label = NOT_NEXT  # nothing to split
                if len(chunk) >= 2:
                    a_end = rng.randint(1, len(chunk) - 1)
                    a = [t for s in chunk[:a_end] for t in s]
                    rest = [t for s in chunk[a_end:] for t in s]
                elif label == IS_NEXT:
                    # BERT's release makes every one-sentence chunk NotNext, which skews the
                    # labels (~42% IsNext measured on short documents); splitting the sentence
                    # keeps B the true continuation of A and the labels at 50/50.
                    cut = rng.randint(1, len(chunk[0]) - 1)
                    a_end, a, rest = 1, chunk[0][:cut], chunk[0][cut:]
                else:
                    a_end, a, rest = 1, list(chunk[0]), []
                if label == IS_NEXT:
                    b = rest
                else:
                    b = _random_span(documents, doc_index, target - len(a), rng)
                    i -= len(chunk) - a_end  # give the unused sentences back
                _truncate_pair(a, b, max_tokens, rng)
                if a and b:
                    examples.append(_encode(a, b, label, cls_id, sep_id))
                chunk, length = [], 0
                target = max_tokens
            i += 1
    return examples


def _random_span(
    documents: list[list[list[int]]], exclude: int, target: int, rng: random.Random
) -> list[int]:
    other = rng.randrange(len(documents) - 1)
    other += other >= exclude  # any document but this one
    document = documents[other]
    start = rng.randrange(len(document))
    span: list[int] = []
    for sentence in document[start:]:
        span.extend(sentence)
        if len(span) >= target:
            break
    return span


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment, from a random end, until the pair fits (as BERT does).

    The draws are made token by token as BERT does (so the RNG stream is BERT's), but the
    trims are counted and applied as one slice per segment: deleting list heads one at a time
    was quadratic in a long paragraph's length."""
    lengths, front, back = [len(a), len(b)], [0, 0], [0, 0]
    while lengths[0] + lengths[1] > max_tokens:
        longer = 0 if lengths[0] > lengths[1] else 1
        lengths[longer] -= 1
        if rng.random() < 0.5:
            front[longer] += 1
        else:
            back[longer] += 1
    for i, segment in enumerate((a, b)):
        segment[:] = segment[front[i] : len(segment) - back[i]]


def _encode(a: list[int], b: list[int], label: int, cls_id: int, sep_id: int) -> dict:
    input_ids = [cls_id, *a, sep_id, *b, sep_id]
    token_type_ids = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    # Marking specials here spares the collator a per-example Python pass to find them.
    special = [1] + [0] * len(a) + [1] + [0] * len(b) + [1]
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "special_tokens_mask": special,
        "next_sentence_label": label,
    }
