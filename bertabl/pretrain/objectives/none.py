"""No pre-training: BERT's architecture (pooler and NSP head included) randomly initialised from
the trial's seed, the control row that shows what pre-training buys. It reads no corpus and takes
no step; trial/pretrain.py resets the training settings it does not depend on."""

from __future__ import annotations

from bertabl.pretrain.objectives.mlm_nsp import MaskedLMWithNSP
from bertabl.trial.pretrain import UNTRAINED


class Untrained(MaskedLMWithNSP):
    name = UNTRAINED
    pretrains = False
    nsp = False  # the head is there, untrained
