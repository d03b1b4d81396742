"""What every task family gives the fine-tuning loop: one trial's data, encoded for the family,
and how to collate it, build the model with its head, and score a split.

A family is one file (classification.py, regression.py, tagging.py, span_qa.py,
multiple_choice.py); `finetune()` (finetune/train.py) is the loop and knows none of them.
Where the examples come from is the task's data source (tasks/sources.py), not the family's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from bertabl.tasks.sources import load_split
from bertabl.tasks.spec import TaskSpec
from bertabl.training import Precision, to_device
from bertabl.trial.data import DataRef
from bertabl.trial.finetune import FinetuneTrialConfig, MultitaskTrialConfig

TrainingConfig = FinetuneTrialConfig | MultitaskTrialConfig


class FamilyData:
    """One trial's task data for its family: each split read and `encode`d.

    `train` holds the training items the loop batches, `lengths` their token counts (for
    length-grouped batches); `collate` turns a list of items into model inputs with labels.
    By default a split is scored by comparing `predict(logits)` with each item's label.
    """

    def __init__(
        self,
        spec: TaskSpec,
        config: TrainingConfig,
        data: DataRef,
        tokenizer: Any,
        pretrained_dir: Path,
        device: torch.device,
    ):
        self.spec, self.config, self.tokenizer = spec, config, tokenizer
        self.pretrained_dir, self.device = pretrained_dir, device
        self.raw = {split: load_split(spec, split, data) for split in ("train", *self.splits)}
        self.encoded = {split: self.encode(rows) for split, rows in self.raw.items()}
        self.train: list = self.encoded["train"]

    @cached_property
    def lengths(self) -> list[int]:
        """Token counts of the training items (for length-grouped batches)."""
        return [length_of(x) for x in self.train]

    @property
    def pad_multiple(self) -> int | None:
        """Batches are padded to a multiple of this (None: to their longest). On a GPU, 8:
        tensor cores want matrix sides that are multiples of 8 (fp16/bf16), and a few padding
        tokens cost less than an odd shape. On the CPU the padding stays minimal, so CPU
        results do not move."""
        return 8 if self.device.type == "cuda" else None

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits scored after every epoch: dev, and any extra dev split (MNLI mismatched)."""
        return ("dev", *self.spec.extra_dev_splits)

    def encode(self, rows) -> list:
        """A split's examples (a `datasets.Dataset`) as the items the collator takes."""
        raise NotImplementedError

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        """The pre-trained encoder with this trial's head (seeded by the caller)."""
        raise NotImplementedError

    def readable(self) -> list[list[dict]] | None:
        """The encoded examples whose token ids the model reads (finetune/vocab.py trains only
        those word-embedding rows); None when the trial trains no word embeddings."""
        return list(self.encoded.values())

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def evaluate(self, model: torch.nn.Module, split: str, precision: Precision) -> dict:
        """The task's metrics on `split` (no gradients, dropout off)."""
        return evaluate_by_label(
            model,
            self.encoded[split],
            self.collate,
            self.config.eval_batch_size,
            precision,
            self.spec.metrics,
            self.predict,
        )


def forward_batches(
    model: torch.nn.Module,
    items: list,
    collate: Callable[[list], dict[str, torch.Tensor]],
    batch_size: int,
    precision: Precision,
) -> Iterator[tuple[list, torch.Tensor | None, dict[str, torch.Tensor], Any]]:
    """Evaluation batches: yields (items, labels or None, inputs on the device, model output),
    with dropout off. Callers run it under `torch.no_grad()`."""
    model.eval()
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = collate(chunk)
        labels = batch.pop("labels", None)
        batch = to_device(batch, precision.device)
        with precision.autocast():
            out = model(**batch)
        yield chunk, labels, batch, out


@torch.no_grad()
def evaluate_by_label(
    model: torch.nn.Module,
    dataset: list,
    collate,
    batch_size: int,
    precision: Precision,
    metrics: tuple[str, ...],
    predict: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """`metrics` of `predict(logits)` against the labels, over `dataset` (one label an item).

    Batches are cut from the examples sorted by length, so dynamic padding adds almost nothing
    (on SST-2 dev, batches of 128 in file order are about half padding). The metrics are
    invariant to the order of (prediction, reference) pairs, and an example's logits do not
    depend on its batch's padding (masked keys) beyond float rounding."""
    from bertabl.finetune.metrics import METRICS

    by_length = sorted(dataset, key=length_of)
    predictions, references = [], []
    for _, labels, _, out in forward_batches(model, by_length, collate, batch_size, precision):
        predictions.append(predict(out.logits).cpu())
        references.append(labels)
    preds = torch.cat(predictions).numpy()
    refs = torch.cat(references).numpy()
    return {name: METRICS[name](preds, refs) for name in metrics}


def length_of(item: dict) -> int:
    """Tokens in an encoded example (the longest candidate for multiple choice)."""
    ids = item["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)
