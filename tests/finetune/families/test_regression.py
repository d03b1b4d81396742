"""Sentence-pair regression: one output computed in fp32 whatever autocast says, the output
itself as the prediction, written as a number."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from transformers import BertConfig, BertModel

from bertabl.finetune.families.regression import Fp32Linear, Regression


def test_the_score_layer_of_the_built_model_computes_in_fp32(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)  # fmt: skip
    BertModel(config).save_pretrained(tmp_path)
    family = Regression.__new__(Regression)  # only what building reads
    family.__dict__ |= {"pretrained_dir": tmp_path, "spec": SimpleNamespace(num_labels=1)}
    family.config = SimpleNamespace(head="linear", recipe=SimpleNamespace(pooling="cls_pooler"))
    model = family._build()
    scores = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    assert [type(m) for m in scores] == [Fp32Linear]  # the classifier, and only it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=torch.tensor([[2, 5, 6, 3]])).logits
    assert out.dtype == torch.float32 and out.shape == (1, 1)
    assert family.predict(torch.tensor([[2.5], [0.25]])).tolist() == [2.5, 0.25]
    assert family.label_of(torch.tensor(2.5)) == 2.5 and isinstance(family.label_of(3), float)


def test_a_regression_score_is_computed_in_fp32_under_autocast():
    torch.manual_seed(0)
    layer = nn.Linear(8, 1)
    reference = nn.Linear(8, 1)
    reference.load_state_dict(layer.state_dict())
    layer.__class__ = Fp32Linear
    x = torch.randn(64, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded, exact = reference(x), layer(x)
    assert (rounded.dtype, exact.dtype) == (torch.bfloat16, torch.float32)
    assert torch.allclose(exact, reference(x), atol=1e-6)  # fp32 to the last bits
    assert list(layer.state_dict()) == ["weight", "bias"]  # names unchanged: checkpoints load
