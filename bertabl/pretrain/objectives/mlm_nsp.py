"""BERT's objective: the masked LM and next-sentence prediction (the paper's "BERT" rows)."""

from __future__ import annotations

from bertabl.pretrain.objectives.pretrain_objective import PretrainObjective


class MaskedLMWithNSP(PretrainObjective):
    name = "mlm_nsp"
    nsp = True
    nsp_head = True
    model_class = "BertForPreTraining"
