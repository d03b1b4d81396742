"""Pooling heads for sequence classification/regression (the `recipe.pooling` axis).

BERT classifies from [CLS] through its pre-trained pooler (a tanh layer trained by NSP); that
stays `BertForSequenceClassification` (pooling = "cls_pooler"). The alternatives practitioners
compare, none of which transformers provides as a BERT head:

- "cls": the [CLS] state without the pooler (what models pre-trained without NSP usually do);
- "mean": the average of the real (non-padding) token states;
- "attention": a learned query scores every real token; the softmax-weighted sum of the states;
- "cnn": a width-3 convolution over the token states, ReLU, then a max over the real positions.

Each reads the encoder's last layer (a causal encoder keeps its mask), then dropout and a linear
layer, like BERT's own head. Padding never changes a result: padded positions are masked out of
the means, softmax and max, and zeroed before the convolution, where they would otherwise leak
into the last real token's window.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, BertModel

from bertabl.finetune.heads import _PooledClassifier

POOLINGS = ("cls", "mean", "attention", "cnn")


class PooledClassifier(_PooledClassifier):
    """A BERT encoder (no pooler) + `config.pooling` + dropout + linear."""

    @classmethod
    def build(cls, pretrained_dir, num_labels: int, pooling: str) -> PooledClassifier:
        """The pre-trained encoder with a new head pooling by `pooling` (one of POOLINGS)."""
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; one of {', '.join(POOLINGS)}")
        # transformers 5's from_pretrained does not pass unknown kwargs into the config
        config = AutoConfig.from_pretrained(pretrained_dir, num_labels=num_labels)
        config.pooling = pooling
        return cls.from_pretrained(pretrained_dir, config=config)

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.pooling = config.pooling
        size = config.hidden_size
        self.bert = BertModel(config, add_pooling_layer=False)
        if self.pooling == "attention":
            self.score = nn.Linear(size, 1)  # its weight vector is the learned query
        if self.pooling == "cnn":
            self.conv = nn.Conv1d(size, size, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(size, config.num_labels)
        self.post_init()

    def pool(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, lengths=None
    ) -> torch.Tensor:
        real = attention_mask.bool().unsqueeze(-1)  # [batch, seq, 1]
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "mean":
            summed = hidden.masked_fill(~real, 0).sum(1)
            return summed / real.sum(1).clamp(min=1).to(hidden.dtype)
        if self.pooling == "attention":
            # Scores in fp32 whatever autocast made them (bf16/fp16 from the linear layer): the
            # softmax over a long sequence needs the precision, and the mask's fill value must
            # be one the scores' dtype holds (fp32's minimum overflows fp16).
            scores = self.score(hidden).float()
            weights = scores.masked_fill(~real, torch.finfo(scores.dtype).min).softmax(dim=1)
            return (weights * hidden).sum(1)
        features = self.conv(hidden.masked_fill(~real, 0).transpose(1, 2)).transpose(1, 2)
        features = features.relu().masked_fill(~real, torch.finfo(features.dtype).min)
        return features.max(dim=1).values
