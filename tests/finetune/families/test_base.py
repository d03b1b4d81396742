"""What every family shares: batches without inputs the model does not take, evaluation batches
cut by length and put back in file order, metrics and the predictions file's lines."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from bertabl.finetune.families.base import (
    FamilyData,
    forward_batches,
    is_labeled,
    length_of,
    predict_by_label,
)
from bertabl.tasks.catalogue import TaskCatalogue
from bertabl.training import Precision

CPU = torch.device("cpu")


class Stub(FamilyData):
    """A family over hand-made items ({"input_ids": [...], "labels": k}), no data files."""

    def __init__(self, spec, items: list[dict], wide: bool = True):  # no files read
        self.spec, self.device, self._takes, self.wide = spec, CPU, None, wide
        self.encoded = {"dev": items, "glue_test": items}
        self.config = SimpleNamespace(eval_batch_size=2)

    def _collate(self, items: list) -> dict[str, torch.Tensor]:
        longest = max(len(x["input_ids"]) for x in items)
        ids = [x["input_ids"] + [0] * (longest - len(x["input_ids"])) for x in items]
        return {
            "input_ids": torch.tensor(ids),
            "token_type_ids": torch.zeros(len(items), longest, dtype=torch.long),
            "labels": torch.tensor([x["labels"] for x in items]),
        }

    def _build(self) -> torch.nn.Module:
        return LengthClassifier(classes=4 if self.wide else 2)


class LengthClassifier(torch.nn.Module):
    """Predicts the class "(sequence length - 2) mod classes" (real tokens are ids > 0); takes
    no segment ids (as DistilBERT). Remembers the widths of the batches it saw."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes
        self.widths: list[int] = []

    def forward(self, input_ids, labels=None):
        self.widths.append(input_ids.shape[1])
        lengths = (input_ids > 0).sum(-1)
        classes = (lengths - 2) % self.classes
        return SimpleNamespace(logits=torch.nn.functional.one_hot(classes, self.classes).float())


ITEMS = [  # lengths 5, 2, 4, 3; labels: the length class, except the last (wrong on purpose)
    {"input_ids": [1, 1, 1, 1, 1], "labels": 3},
    {"input_ids": [1, 1], "labels": 0},
    {"input_ids": [1, 1, 1, 1], "labels": 2},
    {"input_ids": [1, 1, 1], "labels": 0},
]


def test_a_batch_holds_only_what_the_built_model_takes():
    family = Stub(TaskCatalogue()["syn_agree"], ITEMS)
    assert set(family.collate(ITEMS[:2])) == {"input_ids", "token_type_ids", "labels"}
    family.build_model()  # forward(input_ids, labels): no token_type_ids
    assert set(family.collate(ITEMS[:2])) == {"input_ids", "labels"}


def test_evaluation_batches_are_cut_by_length_and_predictions_come_back_in_file_order():
    family = Stub(TaskCatalogue()["syn_agree"], ITEMS)
    model = family.build_model()
    predictions, labels = predict_by_label(
        model, ITEMS, family.collate, 2, Precision(CPU), lambda x: x.argmax(-1)
    )
    assert model.widths == [3, 5]  # lengths sorted (2, 3) then (4, 5): little padding
    assert predictions.in_order.tolist() == [3, 0, 2, 1]
    assert predictions.sorted.tolist() == [0, 1, 2, 3]
    assert labels.in_order.tolist() == [3, 0, 2, 0] and labels.sorted.tolist() == [0, 0, 2, 3]


def test_a_split_is_scored_by_its_tasks_metrics_and_written_by_class_name():
    items = [dict(x, labels=x["labels"] % 2) for x in ITEMS]  # labels 1, 0, 0, 0
    family = Stub(TaskCatalogue()["syn_agree"], items, wide=False)
    model = family.build_model()
    dev = family.evaluate(model, "dev", Precision(CPU))
    # lengths 5, 2, 4, 3 predict classes 1, 0, 0, 1, written by name (syn_agree's: "0", "1");
    # against labels 1, 0, 0, 0: three of four right
    assert dev.metrics == {"accuracy": 0.75}
    assert dev.predictions[0] == {"index": 0, "prediction": "1", "label": "1"}
    assert [line["prediction"] for line in dev.predictions] == ["1", "0", "0", "1"]
    test = family.evaluate(model, "glue_test", Precision(CPU))  # GLUE's own: no labels
    assert test.metrics == {} and test.predictions[3] == {"index": 3, "prediction": "1"}


class Doubler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.5)  # in training mode it would zero about half

    def forward(self, x):
        return self.dropout(x) * 2


def test_evaluation_runs_without_dropout_and_hands_back_the_labels():
    model = Doubler()
    model.train()

    def collate(chunk):
        return {"x": torch.ones(len(chunk)), "labels": torch.tensor(chunk)}

    out = list(forward_batches(model, [0, 1, 2], collate, 2, Precision(CPU)))
    assert not model.training
    assert [chunk for chunk, *_ in out] == [[0, 1], [2]]
    assert [labels.tolist() for _, labels, _, _ in out] == [[0, 1], [2]]
    assert [set(batch) for _, _, batch, _ in out] == [{"x"}, {"x"}]  # the labels taken out
    assert [result.tolist() for *_, result in out] == [[2.0, 2.0], [2.0]]  # nothing dropped


def test_lengths_and_which_splits_are_labeled():
    assert length_of({"input_ids": [5, 6, 7]}) == 3
    assert length_of({"input_ids": [[5, 6], [5, 6, 7, 8], [5]]}) == 4  # multiple choice: longest
    assert is_labeled("dev") and is_labeled("test")
    assert not is_labeled("glue_test") and not is_labeled("glue_test_mismatched")
