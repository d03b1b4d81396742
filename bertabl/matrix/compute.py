"""Compute estimates for a plan: parameters, tokens, and training FLOPs ~ 6 * params * tokens."""

from __future__ import annotations

# BERT-Base as the paper pre-trained it: 1M steps x 256 sequences, 90% of steps at length 128 and
# 10% at 512 -> ~42.6B tokens (PAPER.md, "Pre-training recipe").
PAPER_BASE_TOKENS = 1_000_000 * 256 * (0.9 * 128 + 0.1 * 512)


def bert_parameters(
    vocab: int, layers: int, hidden: int, ffn: int, max_position: int, nsp: bool = True
) -> int:
    """Trainable parameters of the pre-training model (decoder weights tied to word embeddings).

    With NSP: BertForPreTraining. Without: BertForMaskedLM, which has no pooler either (only NSP
    trains it; fine-tuning adds one).
    """
    embeddings = (vocab + max_position + 2) * hidden + 2 * hidden  # + token types, LayerNorm
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden
    feed_forward = hidden * ffn + ffn + ffn * hidden + hidden + 2 * hidden
    encoder = layers * (attention + feed_forward)
    pooler = hidden * hidden + hidden if nsp else 0
    mlm_head = hidden * hidden + hidden + 2 * hidden + vocab  # transform + LayerNorm + bias
    nsp_head = 2 * hidden + 2 if nsp else 0
    return embeddings + encoder + pooler + mlm_head + nsp_head


PAPER_BASE_FLOPS = 6 * bert_parameters(30522, 12, 768, 3072, 512) * PAPER_BASE_TOKENS


def training_flops(parameters: int, tokens: float) -> float:
    """The usual dense-Transformer estimate: forward + backward ~ 6 FLOPs per parameter-token."""
    return 6.0 * parameters * tokens


# What `bertabl plan` assumes for wall-time estimates unless told otherwise: an H100/H200-class
# GPU's dense bf16 peak, at the MFU a well-tuned BERT pre-training reaches (published: ~40-48%).
PEAK_TFLOPS = 989.0
MFU = 0.40


def gpu_hours(flops: float, mfu: float = MFU, peak_tflops: float = PEAK_TFLOPS) -> float:
    """Hours on one GPU that runs at `mfu` of `peak_tflops`."""
    return flops / (mfu * peak_tflops * 1e12) / 3600
