"""Held-out language-model perplexity (Table 6's "LM (ppl)" column).

Perplexity = exp(mean negative log-likelihood per predicted token), pooled over every predicted
token of the held-out set (not a mean of per-batch perplexities). For the masked LM the predicted
tokens are the masked positions, chosen by the trial's masking config with a fixed seed, so models
with the same masking config are scored on the same positions; for the left-to-right LM they are
every next token. The two are not comparable with each other (the paper says so of its MLM
ppl).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.training import IGNORE_INDEX as IGNORE
from bertabl.trial.pretrain import Objective


def split_heldout(documents: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) document indices of a corpus of `documents`: a seeded choice of
    whole documents, each list in corpus order.

    Whole documents, so no held-out sentence ever appears in training (also not as a random
    NotNext segment). At least two when `fraction` > 0 (NSP pairs need a second document).
    """
    everything = np.arange(documents)
    if fraction <= 0:
        return everything, everything[:0]
    count = max(2, round(fraction * documents))
    if documents - count < 2:
        return everything, everything[:0]  # too small a corpus to spare any; no ppl
    chosen = np.zeros(documents, dtype=bool)
    chosen[random.Random(f"{seed}/heldout").sample(range(documents), count)] = True
    return everything[~chosen], everything[chosen]


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(total NLL / predicted tokens); capped so a diverged model gives a large finite value."""
    if tokens <= 0:
        raise ValueError("perplexity needs at least one predicted token")
    return math.exp(min(nll_sum / tokens, 50.0))


@torch.no_grad()
def heldout_metrics(
    model: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    objective: Objective,
    device: torch.device,
    autocast,
) -> dict[str, float]:
    """Held-out loss, perplexity and (with NSP) next-sentence accuracy of `model` on `batches`.

    `batches` are collated like training batches (LTR labels already shifted to next tokens).
    """
    was_training = model.training
    model.eval()
    with_nsp = OBJECTIVES[objective].nsp
    nll, tokens, nsp_hits, pairs = 0.0, 0, 0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "next_sentence_label")}
        with autocast():
            out = model(**inputs)
        logits = out.prediction_logits if with_nsp else out.logits
        nll += torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1),
            batch["labels"].flatten(),
            ignore_index=IGNORE,
            reduction="sum",
        ).item()
        tokens += int((batch["labels"] != IGNORE).sum())
        if with_nsp:
            labels = batch["next_sentence_label"]
            nsp_hits += int((out.seq_relationship_logits.argmax(-1) == labels).sum())
            pairs += len(labels)
    model.train(was_training)
    if tokens == 0:
        return {}
    metrics = {
        "heldout_loss": nll / tokens,
        "heldout_perplexity": perplexity(nll, tokens),
        "heldout_tokens": tokens,
    }
    if pairs:
        metrics["heldout_nsp_acc"] = nsp_hits / pairs
    return metrics
