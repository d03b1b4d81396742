"""The masked LM alone (the paper's "No NSP"): the same pairs as BERT's, without the NSP loss."""

from __future__ import annotations

from bertabl.pretrain.objectives.pretrain_objective import PretrainObjective


class MaskedLM(PretrainObjective):
    name = "mlm"
    # no NSP head, and no pooler (only NSP would train it), as in the paper's "No NSP"
    model_class = "BertForMaskedLM"
