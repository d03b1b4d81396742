"""Sentence and sentence-pair classification (GLUE, the synthetic suite, custom tasks): one
label per input, from BERT's [CLS] pooler (or the recipe's pooling head, the BiLSTM head, or the
last token of a left-to-right model); cross-entropy; argmax predictions."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding

from bertabl.finetune.families.base import FamilyData
from bertabl.finetune.heads import BiLSTMClassifier, LeftToRightClassifier
from bertabl.finetune.pooling import PooledClassifier


class Classification(FamilyData):
    def encode(self, rows, split: str) -> list[dict]:
        return encode_texts(rows, self.tokenizer, self.config.max_seq_len)

    def _collate(self, items: list) -> dict[str, torch.Tensor]:
        batch = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_multiple)(
            items
        )  # to the batch's longest (on a GPU, rounded up to a multiple of 8)
        return with_lengths(batch) if self.config.head == "bilstm" else batch

    def _build(self) -> torch.nn.Module:
        config, directory, labels = self.config, self.pretrained_dir, self.spec.num_labels
        if config.head == "bilstm":
            return BiLSTMClassifier.build(directory, labels, config.bilstm_hidden)
        if config.recipe.pooling != "cls_pooler":  # the recipe's pooling head (pooling.py)
            return PooledClassifier.build(directory, labels, config.recipe.pooling)
        if getattr(AutoConfig.from_pretrained(directory), "is_decoder", False):  # an `ltr` model
            return LeftToRightClassifier.from_pretrained(directory, num_labels=labels)
        # any BERT-family encoder, with transformers' own head (BERT: BertForSequenceClassification)
        return AutoModelForSequenceClassification.from_pretrained(directory, num_labels=labels)


def encode_texts(dataset, tokenizer, max_seq_len: int) -> list[dict]:
    """Tokenise `text_a` (and `text_b`) once, unpadded (the collator pads per batch)."""
    pair = "text_b" in dataset.column_names

    def tokenize(batch):
        args = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
        return tokenizer(*args, truncation=True, max_length=max_seq_len)

    removed = [c for c in dataset.column_names if c != "label"]
    encoded = dataset.map(tokenize, batched=True, remove_columns=removed)
    # Plain dicts of lists are what DataCollatorWithPadding pads. `to_dict` reads each column
    # once; `encoded[c]` is a lazy Column in datasets >= 4, an Arrow lookup per row and column.
    columns = encoded.to_dict()
    columns["labels"] = columns.pop("label")
    return [{c: values[i] for c, values in columns.items()} for i in range(len(encoded))]


def with_lengths(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`batch` + "lengths": real tokens per sequence, counted on the host, for a BiLSTM head's
    packing (training.HOST_KEYS keeps them there)."""
    return batch | {"lengths": batch["attention_mask"].sum(-1)}
