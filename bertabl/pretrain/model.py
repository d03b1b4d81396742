"""Models per pre-training objective, built from transformers' BERT classes."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertLMHeadModel,
    PreTrainedModel,
)
from transformers.models.bert.modeling_bert import BertPreTrainingHeads

from bertabl.trial.pretrain import ModelConfig, Objective

# BertConfig's name for each pretrain.model setting (dropout applies to both of BERT's kinds).
_BERT_NAMES = {
    "hidden_size": "hidden",
    "num_hidden_layers": "layers",
    "num_attention_heads": "heads",
    "intermediate_size": "ffn",
    "hidden_dropout_prob": "dropout",
    "attention_probs_dropout_prob": "dropout",
    "max_position_embeddings": "max_position",
}


def bert_config(model: ModelConfig, vocab_size: int, pad_token_id: int) -> BertConfig:
    """A `BertConfig` for the resolved `pretrain.model` settings."""
    sizes = {hf: getattr(model, ours) for hf, ours in _BERT_NAMES.items()}
    return BertConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, **sizes)


def build_model(
    objective: Objective, model: ModelConfig, vocab_size: int, pad_token_id: int
) -> PreTrainedModel:
    """A freshly initialised model with the heads its objective trains."""
    config = bert_config(model, vocab_size, pad_token_id)
    if objective == "mlm_nsp":
        return BertForPreTraining(config)
    if objective == "ltr":
        # Left-to-right LM: BERT's self-attention made causal. `is_decoder` is saved with the
        # checkpoint, so the causal mask stays when the model is fine-tuned (the paper's setup).
        config.is_decoder = True
        config.use_cache = False  # training only: no key/value cache
        return BertLMHeadModel(config)
    # MLM only: no NSP head, and no pooler (only NSP would train it), as in the paper's "No NSP".
    return BertForMaskedLM(config)


class MaskedPositionsLM(torch.nn.Module):
    """Runs a masked-LM model (BertForPreTraining or BertForMaskedLM) but decodes the vocabulary
    only at the given flat positions (the masked tokens, ~15%): the vocabulary projection over
    every position is most of a small model's compute and every unmasked row is thrown away by
    the loss. The logits at those positions equal the dense model's, so the loss is the same.

    Not a subclass: the HF model itself stays what is saved and checkpointed; this module holds
    it (same parameters), so DDP can wrap it. Left-to-right LM predicts every position: dense.
    """

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        masked_positions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(MLM logits [masked tokens, vocab] in `masked_positions` order, NSP logits or None)."""
        out = self.model.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        hidden = out.last_hidden_state.flatten(0, 1).index_select(0, masked_positions)
        heads = self.model.cls
        if isinstance(heads, BertPreTrainingHeads):  # MLM + NSP
            return heads.predictions(hidden), heads.seq_relationship(out.pooler_output)
        return heads.predictions(hidden), None
