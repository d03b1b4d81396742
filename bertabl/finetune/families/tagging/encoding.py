"""CoNLL-2003 NER as a token-level task, the BERT paper's way (Sec. 5.3).

Each word is split into WordPiece sub-tokens; only the FIRST sub-token of a word carries the
word's label (the paper: "we use the representation of the first sub-token as the input to the
token-level classifier"), every other sub-token and the special tokens get -100, which
`torch.nn.CrossEntropyLoss` ignores. Scoring is entity-level (conlleval), so predictions in
either tag scheme score correctly against the files' IOB1 gold.

The labels a model trains on are in the trial's `tag_scheme`. By default that is IOB1, the
files' own scheme, which transformers' run_ner trains on: in IOB1 every word of an entity is
I-X (B-X only splits two touching entities of one type), so the classifier learns one label
per entity type. IOB2 (every entity opens with B-X) doubles that, and a B-X predicted inside
an entity splits it in two, losing both halves. On a small budget that costs a lot: all-MiniLM-
L6-v2 fine-tuned on 1,515 CoNLL sentences for 2 epochs reached 42-43 dev F1 trained on IOB2 and
56 on IOB1, in bertabl and in transformers' Trainer alike (bench/parity.py; bertabl trained on
IOB2 only until its data format 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from bertabl.data.formats.conll import CONLL_LABELS
from bertabl.finetune.metrics import conll_f1, iob1_to_iob2, iob2_to_iob1
from bertabl.training import IGNORE_INDEX as IGNORE
from bertabl.trial.finetune import DEFAULT_TAG_SCHEME, TagScheme

log = logging.getLogger(__name__)

# IOB1 and IOB2 use the same tag inventory (B-X, I-X, O); only where B- appears differs. Keeping
# CONLL_LABELS' order keeps ids equal to the Hugging Face `conll2003` dataset's ner_tags.
LABELS: tuple[str, ...] = tuple(CONLL_LABELS)
LABEL_TO_ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
_TO_SCHEME = {"iob1": iob2_to_iob1, "iob2": iob1_to_iob2}  # each a no-op on its own scheme


def in_scheme(tags: Sequence[str], scheme: TagScheme) -> list[str]:
    """`tags` (IOB1 or IOB2) written in `scheme`."""
    return _TO_SCHEME[scheme](tags)


def encode(
    sentences: Sequence[dict],
    tokenizer: Any,
    max_seq_len: int,
    context: Sequence[tuple[list[int], list[int]]] | None = None,
    scheme: TagScheme = DEFAULT_TAG_SCHEME,
) -> list[dict]:
    """Tokenize pre-split sentences (`read_conll2003` dicts) into first-sub-token-labelled features.

    With `context` (per sentence: the token ids of its document before and after it, see
    `document_context`), each sentence is encoded inside as much of that context as fits in
    max_seq_len, split evenly between the sides (the paper's "maximal document context"); only
    the sentence's own tokens carry labels and word ids.

    Each feature: input_ids, token_type_ids, attention_mask, labels (ids of the tags in `scheme`
    at first sub-tokens, -100 elsewhere), word_ids (word index per position, None for
    [CLS]/[SEP]), num_words, and truncated_words (cut off by max_seq_len) and dropped_words
    (those plus, rarely, words the tokenizer maps to nothing, e.g. a lone zero-width space).
    Dropped words are not trained on and `decode` predicts "O" for them; the totals are logged
    as a warning.
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
        for tag in in_scheme(tags, scheme):
            if tag not in LABEL_TO_ID:
                raise ValueError(f"ner.encode: sentence {n}: unknown tag {tag!r}; known: {LABELS}")
            tag_ids.append(LABEL_TO_ID[tag])
        if context is None:
            enc = tokenizer(
                words, is_split_into_words=True, truncation=True, max_length=max_seq_len
            )
        else:
            enc = _in_context(words, tokenizer, max_seq_len, *context[n])
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
        full = len(enc["input_ids"]) >= max_seq_len
        if context is not None:  # only the sentence's own tokens can push words out
            full = len([w for w in word_ids if w is not None]) >= max_seq_len - 2
        cut = len(words) - 1 - last if full else 0
        empty = len(words) - len(seen) - cut
        truncated += cut
        truncated_sentences += int(cut > 0)
        lost = cut + empty
        dropped += lost
        features.append(
            {
                "input_ids": list(enc["input_ids"]),
                # tokenizers without segment ids (RoBERTa's, DistilBERT's): one segment
                "token_type_ids": list(enc.get("token_type_ids") or [0] * len(enc["input_ids"])),
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


class _Encoded(dict):
    """A tokenizer's encoding assembled by hand (sentence inside its context): word_ids too."""

    def __init__(self, ids: list[int], word_ids: list[int | None]):
        ones = [1] * len(ids)
        super().__init__(input_ids=ids, token_type_ids=[0] * len(ids), attention_mask=ones)
        self._word_ids = word_ids

    def word_ids(self) -> list[int | None]:
        return self._word_ids


def _in_context(words, tokenizer, max_seq_len: int, left: list[int], right: list[int]):
    own = tokenizer(
        words,
        is_split_into_words=True,
        add_special_tokens=False,
        truncation=True,
        max_length=max_seq_len - 2,
    )
    ids, word_ids = list(own["input_ids"]), own.word_ids()
    room = max_seq_len - 2 - len(ids)
    before = min(len(left), room // 2)
    after = min(len(right), room - before)
    before = min(len(left), room - after)  # what the right side left unused
    context_left, context_right = left[len(left) - before :], right[:after]
    tokens = [tokenizer.cls_token_id, *context_left, *ids, *context_right, tokenizer.sep_token_id]
    positions = [None] * (1 + before) + word_ids + [None] * (after + 1)
    return _Encoded(tokens, positions)


def document_context(
    sentences: Sequence[dict], document: Sequence[dict], tokenizer: Any
) -> list[tuple[list[int], list[int]]]:
    """Per sentence of `sentences` (rows with "document" and "index"), the token ids of the
    other sentences of its document in `document` (the whole split, in file order) before and
    after it."""
    by_document: dict[int, list[tuple[int, list[int]]]] = {}
    for row in document:
        pieces = tokenizer(list(row["tokens"]), is_split_into_words=True, add_special_tokens=False)
        by_document.setdefault(row["document"], []).append((row["index"], pieces["input_ids"]))
    out = []
    for sentence in sentences:
        others = by_document[sentence["document"]]
        left = [t for i, ids in others if i < sentence["index"] for t in ids]
        right = [t for i, ids in others if i > sentence["index"] for t in ids]
        out.append((left, right))
    return out


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
