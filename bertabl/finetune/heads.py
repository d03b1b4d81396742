"""Classification heads that transformers does not provide.

`LeftToRightClassifier`: the paper's "LTR & No NSP" model is fine-tuned with its left-only
attention kept (dropping it hurt, Sec. 5.1). Under a causal mask, [CLS] (position 0) has seen
only itself, so BERT's pooler on [CLS] would classify from nothing; like GPT, this head reads the
hidden state of the *last real token*, the only position that has attended to the whole input.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class LeftToRightClassifier(BertPreTrainedModel):
    """A causal BERT encoder + a linear head on the last non-padding position."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        last = attention_mask.sum(-1) - 1  # right-padded: the last real token
        pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
