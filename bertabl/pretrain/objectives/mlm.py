"""The masked LM alone (the paper's "No NSP"): the same pairs as BERT's, without the NSP loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bertabl.pretrain.objectives.pretrain_objective import PretrainObjective

if TYPE_CHECKING:
    from transformers import BertConfig, PreTrainedModel


class MaskedLM(PretrainObjective):
    name = "mlm"

    def model(self, config: BertConfig) -> PreTrainedModel:
        from transformers import BertForMaskedLM

        # no NSP head, and no pooler (only NSP would train it), as in the paper's "No NSP"
        return BertForMaskedLM(config)
