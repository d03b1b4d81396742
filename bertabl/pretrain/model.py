"""The modules pre-training runs forward, built around transformers' BERT classes: the masked LM
decoded at its masked positions only, and the left-to-right LM's loss in chunks. Which model an
objective builds, and which of these it trains through, is the objective's (objectives/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.utils.checkpoint import checkpoint
from transformers import BertConfig, PreTrainedModel
from transformers.models.bert.modeling_bert import BertPreTrainingHeads

from bertabl.training import IGNORE_INDEX

if TYPE_CHECKING:
    from bertabl.trial.pretrain import ModelConfig

# Elements of the [positions, vocabulary] logits one LTR micro-batch may hold at once: 2^28 is
# 1 GiB in fp32. Below it the logits are dense (every preset run on a CPU stays there); above
# it the loss is computed in chunks of this size (ChunkedLeftToRightLM). At the paper's scale
# (256 x 512 positions x 30,522) the dense logits alone would be 16 GB in fp32. The held-out
# pass (perplexity.py) decodes in chunks of this size too.
DENSE_LOGITS_LIMIT = 2**28

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


def encode_at(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
    positions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the encoder's last hidden states at the flat `positions` [len(positions), hidden], its
    pooled output or None when the model has no pooler) for a BERT pre-training model."""
    out = model.bert(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
    )
    return out.last_hidden_state.flatten(0, 1).index_select(0, positions), out.pooler_output


class _EncodedAtPositions(torch.nn.Module):
    """Runs a BERT pre-training model's encoder, then `decode`s its hidden states at the given
    flat positions only (those the loss reads).

    Not a subclass of the model: the HF model itself stays what is saved and checkpointed; this
    module holds it (same parameters), so DDP can wrap it.
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
        **targets: torch.Tensor,
    ) -> Any:
        hidden, pooled = encode_at(
            self.model, input_ids, attention_mask, token_type_ids, masked_positions
        )
        return self.decode(hidden, pooled, masked_positions, **targets)

    def decode(
        self,
        hidden: torch.Tensor,
        pooled: torch.Tensor | None,
        masked_positions: torch.Tensor,
        **targets: torch.Tensor,
    ) -> Any:
        """What the module returns, from the hidden states at `masked_positions` [positions,
        hidden] and the pooled output (None: the model has no pooler)."""
        raise NotImplementedError


class MaskedPositionsLM(_EncodedAtPositions):
    """Runs a masked-LM model (BertForPreTraining or BertForMaskedLM) but decodes the vocabulary
    only at the given flat positions (the masked tokens, ~15%): the vocabulary projection over
    every position is most of a small model's compute and every unmasked row is thrown away by
    the loss. The logits at those positions equal the dense model's, so the loss is the same.
    Left-to-right LM predicts every position: dense.
    """

    def decode(
        self, hidden: torch.Tensor, pooled: torch.Tensor | None, masked_positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(MLM logits [masked tokens, vocab] in `masked_positions` order, NSP logits or None)."""
        heads = self.model.cls
        if isinstance(heads, BertPreTrainingHeads):  # MLM + NSP
            return heads.predictions(hidden), heads.seq_relationship(pooled)
        return heads.predictions(hidden), None


class ChunkedLeftToRightLM(_EncodedAtPositions):
    """A left-to-right LM (BertLMHeadModel) whose loss never holds all the logits at once.

    The encoder runs over the whole micro-batch; then the LM head and the cross-entropy run on
    chunks of the predicted positions (the labelled ones: no padding, no last token), each
    under activation checkpointing, so a chunk's logits are freed once its loss is summed and
    recomputed in backward. Peak memory is one chunk's logits, at the price of running the
    vocabulary projection twice. The sum equals the dense loss up to float summation order.
    """

    def __init__(self, model: PreTrainedModel, chunk_rows: int):
        super().__init__(model)
        self.chunk_rows = chunk_rows

    def decode(
        self,
        hidden: torch.Tensor,
        pooled: torch.Tensor | None,
        masked_positions: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """The cross-entropy summed over `masked_positions` (flat positions with a label)."""
        targets = labels.flatten().index_select(0, masked_positions)
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, len(targets), self.chunk_rows):
            end = start + self.chunk_rows
            # the head draws no random numbers: no RNG state to save for the recomputation
            total = total + checkpoint(
                self._loss, hidden[start:end], targets[start:end],
                use_reentrant=False, preserve_rng_state=False,
            )  # fmt: skip
        return total

    def _loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.model.cls.predictions(hidden)
        return torch.nn.functional.cross_entropy(
            logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
