"""What every task family gives the fine-tuning loop: one trial's data, encoded for the family,
and how to collate it, build the model with its head, and score a split.

A family is one place: one file (classification.py, regression.py, span_qa.py,
multiple_choice.py), or one package where that would be over ~400 lines (tagging/: its adapters,
its encoding, the frozen-feature tagger); `finetune()` (finetune/epoch_loop.py) is the loop and
knows none of them.
Where the examples come from is the task's data source (tasks/sources.py), not the family's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertabl.finetune.metrics import METRICS
from bertabl.tasks import evaluate_metric
from bertabl.tasks.sources import load_split
from bertabl.tasks.spec import TaskSpec
from bertabl.training import Precision, TrialRuntime, to_device
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
        runtime: TrialRuntime,
        splits: tuple[str, ...] | None = None,
    ):
        self.spec, self.config, self.tokenizer = spec, config, tokenizer
        self.pretrained_dir, self.device = pretrained_dir, runtime.device
        # Shared by every trial of the run that reads the same model and data (feature-based
        # NER's frozen hidden states); beside the model when no run holds the trial (tests).
        cache = runtime.cache_dir or pretrained_dir.parent
        self.cache_dir = Path(cache) / "feature-cache"
        self.data = data
        # A kept model's scoring reads only its splits; `bertabl export` (splits=()) reads none.
        read = ("train", *self.splits) if splits is None else splits
        self.raw = {split: load_split(spec, split, data) for split in read}
        self.encoded = {split: self.encode(rows, split) for split, rows in self.raw.items()}
        self.train: list = self.encoded.get("train", [])
        self._takes: set[str] | None = None  # the model's forward arguments, once it is built

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

    def encode(self, rows, split: str) -> list:
        """Split `split`'s examples (a `datasets.Dataset`) as the items the collator takes."""
        raise NotImplementedError

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        """A batch of `items` as the model takes it (once built: without inputs its forward
        does not take, e.g. DistilBERT's missing token_type_ids)."""
        batch = self._collate(items)
        if self._takes is not None:
            batch = {k: v for k, v in batch.items() if k in self._takes}
        return batch

    def build_model(self) -> torch.nn.Module:
        """The pre-trained encoder with this trial's head (seeded by the caller)."""
        model = self._build()
        parameters = inspect.signature(model.forward).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            self._takes = set(parameters)
        return model

    def _collate(self, items: list) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _build(self) -> torch.nn.Module:
        raise NotImplementedError

    def readable(self) -> list[list[dict]] | None:
        """The encoded examples whose token ids the model reads (finetune/vocab.py trains only
        those word-embedding rows); None when the trial trains no word embeddings."""
        return list(self.encoded.values())

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def label_of(self, value: Any) -> Any:
        """A prediction or label as the predictions file writes it: the class name (a number
        for regression, an index for multiple choice)."""
        return self.spec.labels[int(value)] if self.spec.labels else int(value)

    def metric(self, name: str) -> Callable[[Any, Any], float]:
        """A metric function by name: bertabl's own (finetune/metrics.py), or the `evaluate`
        metric a custom task lists (tasks/evaluate_metric.py), loaded once per process."""
        if name not in evaluate_metric.evaluate_keys(self.spec.custom):
            return METRICS[name]
        location = self.data.location.get("evaluate", {})
        return evaluate_metric.scorer(name, self.data.identity["evaluate"], location)

    def evaluate(self, model: torch.nn.Module, split: str, precision: Precision) -> Scored:
        """The task's metrics on `split` and every example's prediction (no gradients, dropout
        off); an unlabeled split (GLUE's test sets) gets predictions only."""
        preds, refs = predict_by_label(
            model, self.encoded[split], self.collate, self.config.eval_batch_size, precision,
            self.predict,
        )  # fmt: skip
        labeled = is_labeled(split)
        metrics = (
            {m: self.metric(m)(preds.sorted, refs.sorted) for m in self.spec.metrics}
            if labeled
            else {}
        )
        lines = []
        for index, (p, r) in enumerate(zip(preds.in_order, refs.in_order, strict=True)):
            line = {"index": index, "prediction": self.label_of(p)}
            if labeled:
                line["label"] = self.label_of(r)
            lines.append(line)
        return Scored(metrics, lines)


def is_labeled(split: str) -> bool:
    """GLUE's own test sets ("glue_test", "glue_test_mismatched") have no labels."""
    return not split.startswith("glue_test")


@dataclass(frozen=True)
class Scored:
    """A split's metrics ({} when unlabeled) and its predictions file: one line an example in
    file order, with "index" and the family's prediction fields (and the gold where known)."""

    metrics: dict[str, float]
    predictions: list[dict[str, Any]]


@dataclass(frozen=True)
class _Both:
    """Values in the order they were computed (length-sorted) and in the examples' order."""

    sorted: Any
    in_order: Any


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
def predict_by_label(
    model: torch.nn.Module,
    dataset: list,
    collate,
    batch_size: int,
    precision: Precision,
    predict: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[_Both, _Both]:
    """(predictions, labels) of `predict(logits)` over `dataset` (one label an item), each in
    the order computed and in the dataset's order.

    Batches are cut from the examples sorted by length, so dynamic padding adds almost nothing
    (on SST-2 dev, batches of 128 in file order are about half padding). The metrics are
    invariant to the order of (prediction, reference) pairs up to float summation order (so
    they are computed in the sorted order, as always), and an example's logits do not depend on
    its batch's padding (masked keys) beyond float rounding."""
    order = sorted(range(len(dataset)), key=lambda i: length_of(dataset[i]))
    by_length = [dataset[i] for i in order]
    predictions, references = [], []
    for _, labels, _, out in forward_batches(model, by_length, collate, batch_size, precision):
        predictions.append(predict(out.logits).cpu())
        references.append(labels)
    preds = torch.cat(predictions).numpy()
    refs = torch.cat(references).numpy()
    back = np.empty(len(order), dtype=np.int64)
    back[order] = np.arange(len(order))
    return _Both(preds, preds[back]), _Both(refs, refs[back])


def length_of(item: dict) -> int:
    """Tokens in an encoded example (the longest candidate for multiple choice)."""
    ids = item["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)
