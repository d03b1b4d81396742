"""One adapter per pre-training objective (base.py says what each gives), keyed by the name a
matrix gives (`pretrain.objective`, trial/pretrain.py's `Objective`)."""

from __future__ import annotations

from bertabl.pretrain.objectives.ltr import LeftToRight
from bertabl.pretrain.objectives.mlm import MaskedLM
from bertabl.pretrain.objectives.mlm_nsp import MaskedLMWithNSP
from bertabl.pretrain.objectives.none import Untrained
from bertabl.pretrain.objectives.pretrain_objective import PretrainObjective
from bertabl.trial.pretrain import Objective

OBJECTIVES: dict[Objective, PretrainObjective] = {
    objective.name: objective
    for objective in (MaskedLMWithNSP(), MaskedLM(), LeftToRight(), Untrained())
}
