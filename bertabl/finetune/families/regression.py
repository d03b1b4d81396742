"""Sentence(-pair) regression (STS-B, custom regression tasks): classification's inputs and
heads with one output, mean-squared error, and the output itself as the prediction."""

from __future__ import annotations

import torch
from torch import nn

from bertabl.finetune.families.classification import Classification


class Regression(Classification):
    def _build(self) -> torch.nn.Module:
        model = super()._build()
        outputs = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
        if outputs:  # the score's layer: the head's last Linear with one output
            outputs[-1].__class__ = Fp32Linear  # same parameters and names, fp32 arithmetic
        return model

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, 0].float()

    def label_of(self, value) -> float:
        return float(value)


class Fp32Linear(nn.Linear):
    """A Linear that computes in fp32 whatever autocast says. A regression score is the output
    itself, not an argmax: in bf16 (8 bits of mantissa) a score near 3 moves in steps of 1/64,
    so close predictions merge (a barely trained model's all became one value, and Pearson r of
    a constant is undefined). One output column costs nothing to compute in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())
