"""Model FLOPs utilisation for the pre-training bench: FLOPs counted for what runs, over the
detected GPU's peak.

FLOPs come from the shapes each training forward pass really had (counted by
`bench.pretrain.TokenCounter`), not from 6 x parameters x tokens, which would credit bertabl's
sparse MLM with a vocabulary projection it never computes and ignore attention's quadratic
part. Per training step, 3 x the forward FLOPs (backward is twice the forward):
  encoder matmuls  2 x (4 h^2 + 2 h ffn) x layers   per position computed (padding included)
  attention        4 x h x S x layers               per position (QK^T and AV at its length S)
  MLM head         2 x (h^2 + h V)                  per decoded position (bertabl: the masked
                                                    ~15%; the dense HF model: every position)
  pooler + NSP     2 x (h^2 + 2 h)                  per sequence
Embedding lookups, LayerNorm, softmax and the optimizer are left out (a few percent).
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 (= fp16) tensor-core peaks in TFLOPS from NVIDIA's data sheets, by the device
# name torch reports; the first pattern the name contains wins (GH200's GPU is an H100).
PEAK_BF16_TFLOPS = (
    ("GH200", 989.0),
    ("H200 NVL", 835.0),
    ("H200", 989.0),  # SXM
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM (reported as "H100 80GB HBM3")
    ("A100", 312.0),
)


def detected_peak(device_name: str, precision: str) -> float | None:
    """The bf16/fp16 dense peak of the GPU named `device_name`, or None when it is not in the
    table or the precision has another peak (fp32 runs on TF32 cores: pass --peak-tflops)."""
    if precision not in ("bf16", "fp16"):
        return None
    return next((peak for pattern, peak in PEAK_BF16_TFLOPS if pattern in device_name), None)


@dataclass
class Shapes:
    """What the training forward passes computed, summed over a run."""

    sequences: int = 0
    positions: int = 0  # sequences x their padded length
    attention: int = 0  # sequences x length^2
    decoded: int = 0  # positions the MLM head projected onto the vocabulary


def training_flops(shapes: Shapes, layers: int, hidden: int, ffn: int, vocab: int) -> float:
    h = hidden
    forward = (
        2 * (4 * h * h + 2 * h * ffn) * layers * shapes.positions
        + 4 * h * layers * shapes.attention
        + 2 * (h * h + h * vocab) * shapes.decoded
        + 2 * (h * h + 2 * h) * shapes.sequences
    )
    return 3.0 * forward
