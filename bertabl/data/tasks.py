"""Fine-tuning tasks: what each one is, and how to load its splits as `datasets.Dataset`s.

Every loaded split has the same columns, whatever the source: `text_a`, optionally `text_b`
(sentence-pair tasks), and `label`. Models and collators only ever see those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bertabl.data import synthetic

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its input shape, labels and metrics (the first metric is the main one)."""

    name: str
    description: str
    pair: bool
    num_labels: int
    metrics: tuple[str, ...]
    synthetic: bool

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec(
            name="syn_agree",
            description="synthetic single sentence: do the nouns around 'with' share a topic?",
            pair=False,
            num_labels=2,
            metrics=("accuracy",),
            synthetic=True,
        ),
        TaskSpec(
            name="syn_chain",
            description="synthetic sentence pair: does B's subject continue A's object?",
            pair=True,
            num_labels=2,
            metrics=("accuracy",),
            synthetic=True,
        ),
    ]
}

_GENERATORS = {"syn_agree": synthetic.generate_agree, "syn_chain": synthetic.generate_chain}


def task_data_identity(task: str, data_config: dict) -> dict:
    """The part of the data config that determines this task's examples (goes into trial ids)."""
    # Only the embedded synthetic suite is registered so far; local/hub sources add their own
    # identity (file hashes, hub revision) here.
    syn = data_config["synthetic"]
    return {
        "source": "synthetic",
        "seed": syn["seed"],
        "train_examples": syn["train_examples"],
        "dev_examples": syn["dev_examples"],
    }


def load_split(task: str, split: str, identity: dict) -> datasets.Dataset:
    """One split ("train" or "dev") of `task`, from the source its data identity names."""
    import datasets

    n = identity[f"{split}_examples"]
    seed = synthetic.split_seed(identity["seed"], task, split)
    return datasets.Dataset.from_dict(_GENERATORS[task](seed, n))
