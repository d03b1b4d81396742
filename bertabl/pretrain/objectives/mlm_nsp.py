"""BERT's objective: the masked LM and next-sentence prediction (the paper's "BERT" rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bertabl.pretrain.objectives.pretrain_objective import PretrainObjective

if TYPE_CHECKING:
    from transformers import BertConfig, PreTrainedModel


class MaskedLMWithNSP(PretrainObjective):
    name = "mlm_nsp"
    nsp = True
    nsp_head = True

    def model(self, config: BertConfig) -> PreTrainedModel:
        from transformers import BertForPreTraining

        return BertForPreTraining(config)
