"""CoNLL-2003 NER as a token-level task, the BERT paper's way (Sec. 5.3).

Each word is split into WordPiece sub-tokens; only the FIRST sub-token of a word carries the
word's label (the paper: "we use the representation of the first sub-token as the input to the
token-level classifier"), every other sub-token and the special tokens get -100, which
`torch.nn.CrossEntropyLoss` ignores. Tags are trained in IOB2 (every entity opens with B-), which
is a per-word decision a classifier can make locally; the files' IOB1 needs the previous word's
type to choose between I- and B-. Scoring is entity-level (conlleval), so IOB1 gold and IOB2
predictions score correctly against each other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from bertabl.data.formats.conll import CONLL_LABELS
from bertabl.finetune.metrics import conll_f1, iob1_to_iob2
from bertabl.training import IGNORE_INDEX as IGNORE

log = logging.getLogger(__name__)

# IOB1 and IOB2 use the same tag inventory (B-X, I-X, O); only where B- appears differs. Keeping
# CONLL_LABELS' order keeps ids equal to the Hugging Face `conll2003` dataset's ner_tags.
LABELS: tuple[str, ...] = tuple(CONLL_LABELS)
LABEL_TO_ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}


def encode(sentences: Sequence[dict], tokenizer: Any, max_seq_len: int) -> list[dict]:
    """Tokenize pre-split sentences (`read_conll2003` dicts) into first-sub-token-labelled features.

    Each feature: input_ids, token_type_ids, attention_mask, labels (IOB2 ids at first sub-tokens,
    -100 elsewhere), word_ids (word index per position, None for [CLS]/[SEP]), num_words, and
    truncated_words (cut off by max_seq_len) and dropped_words (those plus, rarely, words the
    tokenizer maps to nothing, e.g. a lone zero-width space). Dropped words are not trained on
    and `decode` predicts "O" for them; the totals are logged as a warning.
    """
    if max_seq_len < 3:
        raise ValueError(
            f"ner.encode: max_seq_len must be >= 3 ([CLS] word [SEP]), got {max_seq_len}"
        )
    features: list[dict] = []
    dropped = truncated = truncated_sentences = 0
    for n, sentence in enumerate(sentences):
        words, tags = list(sentence["tokens"]), list(sentence["tags"])
        if len(words) != len(tags):
            raise ValueError(f"ner.encode: sentence {n}: {len(words)} tokens but {len(tags)} tags")
        tag_ids = []
        for tag in iob1_to_iob2(tags):  # a no-op on data already in IOB2
            if tag not in LABEL_TO_ID:
                raise ValueError(f"ner.encode: sentence {n}: unknown tag {tag!r}; known: {LABELS}")
            tag_ids.append(LABEL_TO_ID[tag])
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_seq_len)
        word_ids = enc.word_ids()
        labels, seen = [], set()
        for w in word_ids:
            if w is None or w in seen:
                labels.append(IGNORE)
            else:
                seen.add(w)
                labels.append(tag_ids[w])
        # Truncation cuts sub-tokens, so a word whose first piece survived still counts as kept;
        # a missing word after the last kept one was cut, one before it tokenized to nothing.
        last = max(seen, default=-1)
        cut = len(words) - 1 - last if len(enc["input_ids"]) >= max_seq_len else 0
        empty = len(words) - len(seen) - cut
        truncated += cut
        truncated_sentences += int(cut > 0)
        lost = cut + empty
        dropped += lost
        features.append(
            {
                "input_ids": list(enc["input_ids"]),
                "token_type_ids": list(enc["token_type_ids"]),
                "attention_mask": list(enc["attention_mask"]),
                "labels": labels,
                "word_ids": word_ids,
                "num_words": len(words),
                "truncated_words": cut,
                "dropped_words": lost,
            }
        )
    if dropped:
        log.warning(
            "ner.encode: %d of %d words have no first sub-token (%d cut by max_seq_len=%d "
            "in %d sentences, %d tokenized to nothing); they are not trained on and are "
            "predicted 'O'",
            dropped,
            sum(f["num_words"] for f in features),
            truncated,
            max_seq_len,
            truncated_sentences,
            dropped - truncated,
        )
    return features


def truncated_words(features: Sequence[dict]) -> int:
    """Total words `encode` cut off at max_seq_len."""
    return sum(f["truncated_words"] for f in features)


def dropped_words(features: Sequence[dict]) -> int:
    """Total words `encode` could not represent (truncated or tokenized to nothing)."""
    return sum(f["dropped_words"] for f in features)


def decode(
    predictions_per_token: Sequence[Any],
    word_ids: Sequence[int | None],
    num_words: int | None = None,
) -> list[str]:
    """Per-word tags from per-position predictions (label ids or tag strings).

    Takes each word's first sub-token prediction. Words without one (cut by truncation) get "O";
    pass the feature's `num_words`, since word_ids alone cannot tell how many words were cut
    after the last kept one. Predictions may be longer than word_ids (batch padding).
    """
    if isinstance(predictions_per_token, torch.Tensor):
        predictions_per_token = predictions_per_token.tolist()
    kept = [w for w in word_ids if w is not None]
    if num_words is None:
        num_words = max(kept) + 1 if kept else 0
    if len(predictions_per_token) < len(word_ids):
        raise ValueError(
            f"ner.decode: {len(predictions_per_token)} predictions for {len(word_ids)} positions"
        )
    tags = [None] * num_words
    for position, w in enumerate(word_ids):
        if w is not None and tags[w] is None:
            p = predictions_per_token[position]
            tags[w] = p if isinstance(p, str) else LABELS[int(p)]
    return [tag or "O" for tag in tags]


def decode_batch(predictions: Sequence[Any], features: Sequence[dict]) -> list[list[str]]:
    """`decode` for each (prediction row, feature) pair."""
    if len(predictions) != len(features):
        raise ValueError(
            f"ner.decode_batch: {len(predictions)} predictions for {len(features)} features"
        )
    pairs = zip(predictions, features, strict=True)
    return [decode(p, f["word_ids"], f["num_words"]) for p, f in pairs]


def evaluate(
    pred_tag_sequences: Sequence[Sequence[str]], gold_tag_sequences: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level {"precision", "recall", "f1"} (conlleval); IOB1 or IOB2 on either side."""
    return conll_f1(pred_tag_sequences, gold_tag_sequences)


def collate(
    features: Sequence[dict], pad_token_id: int = 0, multiple: int | None = None
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence (rounded up to a multiple of `multiple`): model
    inputs + labels (padding labelled -100)."""
    longest = max(len(f["input_ids"]) for f in features)
    if multiple:
        longest = -(-longest // multiple) * multiple
    out: dict[str, torch.Tensor] = {}
    for key, pad in (
        ("input_ids", pad_token_id),
        ("token_type_ids", 0),
        ("attention_mask", 0),
        ("labels", IGNORE),
    ):
        rows = [list(f[key]) + [pad] * (longest - len(f[key])) for f in features]
        out[key] = torch.tensor(rows, dtype=torch.long)
    return out
