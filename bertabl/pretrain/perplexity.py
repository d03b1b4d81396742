"""Held-out language-model perplexity (Table 6's "LM (ppl)" column).

Perplexity = exp(mean negative log-likelihood per predicted token), pooled over every predicted
token of the held-out set (not a mean of per-batch perplexities). For the masked LM the predicted
tokens are the masked positions, chosen by the trial's masking config with a fixed seed, so models
with the same masking config are scored on the same positions; for the left-to-right LM they are
every next token. The two are not comparable with each other (the paper says so of its MLM
ppl).

Like training, the pass decodes the vocabulary only at the predicted positions, in chunks of at
most DENSE_LOGITS_LIMIT logits: dense logits over every position of a held-out batch were 2 GB
of a BERT-Base trial's 5 GB peak at 512 tokens, nearly all of them for positions no loss reads.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from bertabl.pretrain import model as lm
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
    """Held-out loss, perplexity and (with NSP) next-sentence accuracy of `model` (a BERT
    pre-training model of `objective`) on `batches`.

    `batches` are collated like training batches (LTR labels already shifted to next tokens).
    The numbers are the dense computation's (every position's logits, the unlabelled ignored):
    tests/pretrain/test_perplexity.py compares the two.
    """
    was_training = model.training
    model.eval()
    with_nsp = OBJECTIVES[objective].nsp
    rows = max(1, lm.DENSE_LOGITS_LIMIT // model.config.vocab_size)  # positions per chunk
    nll, tokens, nsp_hits, pairs = 0.0, 0, 0, 0
    for batch in batches:
        # found on the host, before the copy: no device->host sync
        positions = (batch["labels"].flatten() != IGNORE).nonzero().squeeze(1)
        targets = batch["labels"].flatten().index_select(0, positions).to(device)
        inputs = [batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")]
        with autocast():
            hidden, pooled = lm.encode_at(model, *inputs, positions.to(device))
        losses = []
        for start in range(0, len(positions), rows):
            with autocast():
                logits = model.cls.predictions(hidden[start : start + rows])
            losses.append(
                torch.nn.functional.cross_entropy(
                    logits.float(), targets[start : start + rows], reduction="none"
                )
            )
        if losses:  # summed in float64: a float32 sum of a batch's token losses rounds at ~1e-7,
            # as much as two models a test compares may differ (tests/pretrain/test_parallel.py)
            nll += torch.cat(losses).double().sum().item()
        tokens += len(positions)
        if with_nsp:
            with autocast():
                nsp_logits = model.cls.seq_relationship(pooled)
            labels = batch["next_sentence_label"].to(device)
            nsp_hits += int((nsp_logits.argmax(-1) == labels).sum())
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
