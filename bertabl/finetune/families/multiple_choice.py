"""Multiple choice (SWAG): each candidate encoded with the context, one score per candidate's
[CLS], softmax over the candidates; the argmax is the prediction."""

from __future__ import annotations

import torch
from transformers import BertForMultipleChoice

from bertabl.finetune import multiple_choice
from bertabl.finetune.families.base import FamilyData, evaluate_by_label, length_of
from bertabl.training import Precision


class MultipleChoice(FamilyData):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoded = {
            split: multiple_choice.encode(list(rows), self.tokenizer, self.config.max_seq_len)
            for split, rows in self.raw.items()
        }
        self.train = self.encoded["train"]
        self.lengths = [length_of(x) for x in self.train]

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        return multiple_choice.collate(items, self.tokenizer)

    def readable(self) -> list[list[dict]]:
        return list(self.encoded.values())

    def build_model(self) -> torch.nn.Module:
        return BertForMultipleChoice.from_pretrained(self.pretrained_dir)

    def evaluate(self, model: torch.nn.Module, split: str, precision: Precision) -> dict:
        return evaluate_by_label(
            model,
            self.encoded[split],
            self.collate,
            self.config.eval_batch_size,
            precision,
            self.spec.metrics,
            lambda logits: logits.argmax(-1),
        )
