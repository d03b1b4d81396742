"""Multiple choice (SWAG): each candidate encoded with the context, one score per candidate's
[CLS], softmax over the candidates; the argmax is the prediction."""

from __future__ import annotations

import torch
from transformers import AutoModelForMultipleChoice

from bertabl.finetune import multiple_choice
from bertabl.finetune.families.base import FamilyData


class MultipleChoice(FamilyData):
    def encode(self, rows, split: str) -> list[dict]:
        return multiple_choice.encode(list(rows), self.tokenizer, self.config.max_seq_len)

    def _collate(self, items: list) -> dict[str, torch.Tensor]:
        return multiple_choice.collate(items, self.tokenizer, self.pad_multiple)

    def _build(self) -> torch.nn.Module:
        return AutoModelForMultipleChoice.from_pretrained(self.pretrained_dir)
