"""What a fine-tuning task is: its family, input shape, labels, metrics and data source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# How a task is fine-tuned and scored (finetune/families/ has one adapter each).
Family = Literal["classification", "regression", "tagging", "span_qa", "multiple_choice"]
# Where its examples come from (tasks/sources.py reads each).
Source = Literal["synthetic", "glue", "conll", "squad", "swag", "custom"]

SENTENCE_FAMILIES = ("classification", "regression")  # one label (or score) per input
# Families whose trials take their batches in random order by default (finetune.group_by_length
# unset): multiple choice. On the parity bench's SWAG-format case (bench/parity: 600 examples, one
# sampler megabatch, so every epoch cuts the same length strata into batches), bertabl with
# length-grouped batches scored below transformers' Trainer (random order, the same initial
# weights) at 5 of seeds 0-5, by 2.5 points on average; at seeds 0-2 random order lifted it by
# 4.5, 2.25 and 3.5 points, to 36.7 +- 1.6 against the Trainer's 36.9 +- 3.3 (issue 27). The other
# families agree with the Trainer with grouping on, and keep its padding saving.
UNGROUPED_FAMILIES = ("multiple_choice",)
# The heads each family takes besides BERT's linear one (finetune.head).
EXTRA_HEADS: dict[str, tuple[str, ...]] = {
    "classification": ("bilstm",),
    "regression": ("bilstm",),
    "span_qa": ("bilstm",),
    "tagging": ("features",),
    "multiple_choice": (),
}


@dataclass(frozen=True)
class TaskSpec:
    """A task; the first of `metrics` is the one that selects grid points by default."""

    name: str
    description: str
    family: Family
    source: Source
    pair: bool
    num_labels: int  # 1 = regression; 0 = spans
    metrics: tuple[str, ...]
    extra_dev_splits: tuple[str, ...] = ()  # evaluated too, reported as dev_<split>_<metric>
    # A task whose head is part of its definition, e.g. Table 8's "NER (feature-based)" column.
    fixed_head: tuple[str, int, str | None] | None = None
    hub_columns: tuple[str, str | None] = ("sentence", None)  # GLUE's text columns on the Hub
    # Examples in the standard train split (compute estimates of data not on this machine)
    train_examples: int = 0
    # Class names in label-id order, as predictions files write them (empty: numbers)
    labels: tuple[str, ...] = ()
    hub_dev_split: dict[str, str] = field(default_factory=lambda: {"dev": "validation"})
    # A task defined in a matrix (data.custom_tasks): its definition, as tasks/custom.py reads it
    custom: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def regression(self) -> bool:
        return self.family == "regression"

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def sentence_level(self) -> bool:
        """One label or score per input (sentence or pair): the pooling heads' families."""
        return self.family in SENTENCE_FAMILIES
