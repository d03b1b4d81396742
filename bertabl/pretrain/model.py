"""Models per pre-training objective, built from transformers' BERT classes."""

from __future__ import annotations

from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertLMHeadModel,
    PreTrainedModel,
)


def bert_config(pretrain: dict, vocab_size: int, pad_token_id: int) -> BertConfig:
    """A `BertConfig` for the resolved `pretrain.model` settings."""
    m = pretrain["model"]
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=m["hidden"],
        num_hidden_layers=m["layers"],
        num_attention_heads=m["heads"],
        intermediate_size=m["intermediate"],
        hidden_dropout_prob=m["dropout"],
        attention_probs_dropout_prob=m["dropout"],
        max_position_embeddings=m["max_position"],
        pad_token_id=pad_token_id,
    )


def build_model(pretrain: dict, vocab_size: int, pad_token_id: int) -> PreTrainedModel:
    """A freshly initialised model with the heads its objective trains."""
    config = bert_config(pretrain, vocab_size, pad_token_id)
    if pretrain["objective"] == "mlm_nsp":
        return BertForPreTraining(config)
    if pretrain["objective"] == "ltr":
        # Left-to-right LM: BERT's self-attention made causal. `is_decoder` is saved with the
        # checkpoint, so the causal mask stays when the model is fine-tuned (the paper's setup).
        config.is_decoder = True
        config.use_cache = False  # training only: no key/value cache
        return BertLMHeadModel(config)
    # MLM only: no NSP head, and no pooler (only NSP would train it), as in the paper's "No NSP".
    return BertForMaskedLM(config)
