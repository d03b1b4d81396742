"""The left-to-right LM (the paper's "LTR & No NSP"): BERT's self-attention made causal, every
next token predicted, no masking and no NSP; the model stays causal when fine-tuned."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bertabl.pretrain.objectives.pretrain_objective import PretrainObjective

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig, PreTrainedModel


class LeftToRight(PretrainObjective):
    name = "ltr"
    masks = False
    causal = True
    model_class = "BertLMHeadModel"

    def model(self, config: BertConfig) -> PreTrainedModel:
        # `is_decoder` is saved with the checkpoint, so the causal mask stays when the model is
        # fine-tuned (the paper's setup)
        config.is_decoder = True
        config.use_cache = False  # training only: no key/value cache
        return super().model(config)

    def training_module(self, model: PreTrainedModel, positions: int) -> torch.nn.Module:
        """Every position is predicted: the dense logits, unless one micro-batch's would exceed
        DENSE_LOGITS_LIMIT elements; then the loss in checkpointed chunks."""
        from bertabl.pretrain.model import DENSE_LOGITS_LIMIT, ChunkedLeftToRightLM

        vocab = model.config.vocab_size
        if positions * vocab <= DENSE_LOGITS_LIMIT:
            return model
        return ChunkedLeftToRightLM(model, max(1, DENSE_LOGITS_LIMIT // vocab))

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        return next_token_labels(labels)

    def logged(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The same numbers, named for what they measure: ltr_loss, ltr_perplexity."""
        renamed = dict(metrics)
        renamed["ltr_loss"] = renamed.pop("mlm_loss")
        renamed["ltr_perplexity"] = renamed.pop("mlm_perplexity")
        return renamed


def next_token_labels(labels: torch.Tensor) -> torch.Tensor:
    """Left-to-right targets: position t is trained to predict token t+1 (padding and the last
    position predict nothing). Shifting the labels lets the masked LM's loss code serve LTR."""
    from bertabl.training import IGNORE_INDEX

    shifted = labels.new_full(labels.shape, IGNORE_INDEX)
    shifted[:, :-1] = labels[:, 1:]
    return shifted
