"""Classification heads that transformers does not provide.

`LeftToRightClassifier`: the paper's "LTR & No NSP" model is fine-tuned with its left-only
attention kept (dropping it hurt, Sec. 5.1). Under a causal mask, [CLS] (position 0) has seen
only itself, so BERT's pooler on [CLS] would classify from nothing; like GPT, this head reads the
hidden state of the *last real token*, the only position that has attended to the whole input.

`FeatureTaggingHead`: Table 7's feature-based NER (see finetune/families/tagging/features.py).

`BiLSTMClassifier`: Table 5's "+ BiLSTM" row, a randomly initialised bidirectional LSTM over the
encoder's token states (the encoder keeps its causal mask if it has one), classifying from the
LSTM's final forward and backward states. The paper does not give its size; `bilstm_hidden`
(default: the model's hidden size) is per direction.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import (
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


class _PooledClassifier(BertPreTrainedModel):
    """BERT encoder -> `self.pool` (one vector per sequence) -> dropout -> linear; MSE/CE loss.

    Subclasses set `bert`, `dropout`, `classifier` and define `pool(hidden, attention_mask,
    lengths)`; `lengths` (real tokens per sequence, on the host; see `_run_bilstm`) is given by
    the collator of a BiLSTM head and is None otherwise.
    """

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        logits = self.classifier(self.dropout(self.pool(hidden, attention_mask, lengths)))
        return SequenceClassifierOutput(loss=_loss(logits, labels, self.num_labels), logits=logits)


class LeftToRightClassifier(_PooledClassifier):
    """A causal BERT encoder + a linear head on the last non-padding position."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def pool(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, lengths=None
    ) -> torch.Tensor:
        last = attention_mask.sum(-1) - 1  # right-padded: the last real token
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class BiLSTMClassifier(_PooledClassifier):
    """A BERT encoder + a BiLSTM over its token states + a linear layer."""

    @classmethod
    def build(cls, pretrained_dir, num_labels: int, bilstm_hidden: int) -> BiLSTMClassifier:
        """The pre-trained encoder with a new BiLSTM head (size 0 = the model's hidden size)."""
        return _with_bilstm(cls, pretrained_dir, bilstm_hidden, num_labels=num_labels)

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        size = getattr(config, "bilstm_hidden", 0) or config.hidden_size
        self.bert = BertModel(config, add_pooling_layer=False)
        self.lstm = nn.LSTM(config.hidden_size, size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(2 * size, config.num_labels)
        self.post_init()

    def pool(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, lengths=None
    ) -> torch.Tensor:
        _, final = _run_bilstm(self.lstm, hidden, attention_mask, lengths)
        return torch.cat([final[0], final[1]], dim=-1)  # forward end, backward end


class BiLSTMQuestionAnswering(BertPreTrainedModel):
    """Table 5's "+ BiLSTM" for SQuAD: a BiLSTM over the token states, then start/end logits."""

    @classmethod
    def build(cls, pretrained_dir, bilstm_hidden: int) -> BiLSTMQuestionAnswering:
        return _with_bilstm(cls, pretrained_dir, bilstm_hidden)

    def __init__(self, config):
        super().__init__(config)
        size = getattr(config, "bilstm_hidden", 0) or config.hidden_size
        self.bert = BertModel(config, add_pooling_layer=False)
        self.lstm = nn.LSTM(config.hidden_size, size, batch_first=True, bidirectional=True)
        self.qa_outputs = nn.Linear(2 * size, 2)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> QuestionAnsweringModelOutput:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        out, _ = _run_bilstm(self.lstm, hidden, attention_mask, lengths)
        start_logits, end_logits = self.qa_outputs(out).unbind(dim=-1)
        loss = None
        if start_positions is not None and end_positions is not None:  # as BertForQuestionAnswering
            loss = (
                nn.functional.cross_entropy(start_logits, start_positions)
                + nn.functional.cross_entropy(end_logits, end_positions)
            ) / 2
        return QuestionAnsweringModelOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits
        )


class FeatureTaggingHead(nn.Module):
    """`features.FeatureTagger` with the output the fine-tuning loop expects (.loss, .logits).

    The encoder is not in this module at all: its hidden states were computed once, frozen, and
    come in the batch, so only the BiLSTM tagger trains (and is checkpointed).
    """

    def __init__(self, tagger: nn.Module):
        super().__init__()
        self.tagger = tagger

    def forward(
        self, hidden_states, mask, first, labels=None, lengths=None
    ) -> TokenClassifierOutput:
        logits = self.tagger(hidden_states, mask, first, lengths)
        loss = self.tagger.loss(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits)


def _with_bilstm(cls, pretrained_dir, bilstm_hidden: int, **config_kwargs):
    """`cls` from the pre-trained checkpoint, its config told the BiLSTM size (transformers 5's
    from_pretrained no longer passes unknown keyword arguments into the config)."""
    config = AutoConfig.from_pretrained(pretrained_dir, **config_kwargs)
    config.bilstm_hidden = bilstm_hidden
    return cls.from_pretrained(pretrained_dir, config=config)


def _run_bilstm(
    lstm: nn.LSTM,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    lengths: torch.Tensor | None = None,
):
    """(per-token outputs [batch, seq, 2*size], final states [2, batch, size]) of `lstm` over
    the real tokens only: padding never enters, so the backward direction starts at the last
    real token. `lengths` are the real tokens per sequence on the host, where packing needs
    them (None: counted from the mask, a device->host copy on a GPU).

    The LSTM runs in fp32 with autocast off: autocast would run cuDNN's LSTM in fp16 or bf16,
    whose recurrence compounds the rounding over every time step (and an fp16 LSTM's state can
    overflow where fp32's does not). It is a small part of the model's compute.
    """
    if lengths is None:
        lengths = attention_mask.sum(-1).cpu()
    with torch.autocast(hidden.device.type, enabled=False):
        packed = nn.utils.rnn.pack_padded_sequence(
            hidden.float(), lengths, batch_first=True, enforce_sorted=False
        )
        out, (final, _) = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=hidden.size(1))
    return out, final


def _loss(logits: torch.Tensor, labels: torch.Tensor | None, num_labels: int):
    if labels is None:
        return None
    if num_labels == 1:
        return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    return nn.functional.cross_entropy(logits.float(), labels)
