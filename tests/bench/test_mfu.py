"""bench/mfu.py: FLOPs of what ran, checked against torch's own FLOP counter; GPU peaks."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForPreTraining

from bench.mfu import Shapes, detected_peak, training_flops
from bench.pretrain import TokenCounter
from bertabl.pretrain.model import MaskedPositionsLM

LAYERS, HIDDEN, FFN, VOCAB = 2, 16, 64, 50


def test_training_flops_closed_form():
    # forward: matmuls 2(4*4 + 2*2*8)*3 = 288, attention 4*2*9 = 72, head 2(4 + 20) = 48,
    # pooler + NSP 2(4 + 4) = 16; training = 3 x 424
    shapes = Shapes(sequences=1, positions=3, attention=9, decoded=1)
    assert training_flops(shapes, layers=1, hidden=2, ffn=8, vocab=10) == 3 * 424


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "masked positions"])
def test_counted_matmul_flops_equal_torchs_flop_counter(sparse: bool):
    """One training step of a tiny BERT (dense HF head, or bertabl's masked positions): the
    shapes TokenCounter saw give torch's FlopCounterMode total, attention included (run by
    SDPA's math backend, whose matmuls it counts; it does not count CPU's fused kernel)."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=FFN,
    )
    model = BertForPreTraining(config).train()
    ids = torch.randint(1, VOCAB, (3, 10))
    mask = torch.ones_like(ids)
    positions = torch.tensor([1, 4, 12, 25])  # 4 of the 30 positions masked
    counter = TokenCounter()
    try:
        counter.reset(torch.device("cpu"))
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as flops:
            if sparse:
                mlm, nsp = MaskedPositionsLM(model)(ids, mask, torch.zeros_like(ids), positions)
            else:
                out = model(input_ids=ids, attention_mask=mask)
                mlm, nsp = out.prediction_logits, out.seq_relationship_logits
            (mlm.sum() + nsp.sum()).backward()
    finally:
        counter.remove()
    shapes = counter.shapes
    assert (shapes.sequences, shapes.positions, shapes.attention) == (3, 30, 300)
    assert shapes.decoded == (4 if sparse else 30) and counter.vocab == VOCAB
    assert training_flops(shapes, LAYERS, HIDDEN, FFN, VOCAB) == flops.get_total_flops()


@pytest.mark.parametrize(
    ("name", "precision", "peak"),
    [
        ("NVIDIA H200", "bf16", 989.0),
        ("NVIDIA H200 NVL", "bf16", 835.0),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.0),
        ("NVIDIA H100 PCIe", "fp16", 756.0),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA GH200 480GB", "bf16", 989.0),
        ("NVIDIA L4", "bf16", None),  # not in the table: --peak-tflops
        ("NVIDIA H100 80GB HBM3", "fp32", None),  # TF32 has its own peak
    ],
)
def test_detected_peaks(name: str, precision: str, peak):
    assert detected_peak(name, precision) == peak


def test_utilisation_line():
    from types import SimpleNamespace

    from bench.pretrain import _utilisation

    shapes = Shapes(sequences=1, positions=3, attention=9, decoded=1)
    counter = SimpleNamespace(shapes=shapes, vocab=10)  # 3 x 424 FLOPs with layers=1, hidden=2
    assert _utilisation(counter, 1, 2, 1272e-12 / 2, peak=4.0) == (
        "MFU 50.0% (2.0 of 4 TFLOPS, FLOPs of what ran)"
    )
    assert "no known peak" in _utilisation(counter, 1, 2, 1.0, peak=None)
