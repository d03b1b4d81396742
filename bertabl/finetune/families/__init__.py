"""One adapter per task family: how a task of that family is encoded, collated, given its
model and head, and scored (base.py says what each provides)."""

from __future__ import annotations

from bertabl.finetune.families.base import FamilyData
from bertabl.finetune.families.classification import Classification
from bertabl.finetune.families.multiple_choice import MultipleChoice
from bertabl.finetune.families.regression import Regression
from bertabl.finetune.families.span_qa import SpanQA
from bertabl.finetune.families.tagging import FeatureTagging, Tagging
from bertabl.tasks.spec import TaskSpec

FAMILIES: dict[str, type[FamilyData]] = {
    "classification": Classification,
    "regression": Regression,
    "tagging": Tagging,
    "span_qa": SpanQA,
    "multiple_choice": MultipleChoice,
}


def family_of(spec: TaskSpec, head: str) -> type[FamilyData]:
    """The adapter for a task of `spec`'s family fine-tuned with `head`."""
    if spec.family == "tagging" and head == "features":
        return FeatureTagging
    return FAMILIES[spec.family]
