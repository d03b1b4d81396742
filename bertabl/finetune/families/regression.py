"""Sentence(-pair) regression (STS-B, custom regression tasks): classification's inputs and
heads with one output, mean-squared error, and the output itself as the prediction."""

from __future__ import annotations

import torch

from bertabl.finetune.families.classification import Classification


class Regression(Classification):
    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, 0].float()

    def label_of(self, value) -> float:
        return float(value)
