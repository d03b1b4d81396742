"""The pre-training trial body: corpus -> pair examples -> masked batches -> trained encoder.

A plain function (no Ray inside) so it can run in a Tune trial, a test, or a benchmark loop.
The loop is written out rather than using HF `Trainer`: a Tune trial must report metrics and
checkpoints on its own schedule, and the loop is the place later speed work (packing, sparse MLM
decoding) goes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling

from bertabl.data.corpus import load_corpus
from bertabl.data.tokenizer import build_tokenizer
from bertabl.pretrain.examples import build_pair_examples
from bertabl.pretrain.model import build_model
from bertabl.training import adamw_with_schedule, autocast, optimizer_step, seed_everything

Reporter = Callable[[dict[str, Any], Path | None], None]
LOG_EVERY = 25


def pretrain(
    config: dict[str, Any], out_dir: Path, report: Reporter, device: torch.device
) -> dict[str, Any]:
    """Run one pre-training trial; saves model + tokenizer to `out_dir/model`; returns metrics."""
    pt = config["pretrain"]
    seed_everything(pt["seed"])
    tokenizer = build_tokenizer(config["data"], out_dir / "vocab")
    documents = [
        tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in load_corpus(config["data"])
    ]
    model = build_model(pt, len(tokenizer), tokenizer.pad_token_id).to(device)
    model.train()
    optimizer, scheduler = adamw_with_schedule(
        model,
        pt["learning_rate"],
        pt["weight_decay"],
        pt["steps"],
        pt["warmup_fraction"],
        betas=(pt["adam_beta1"], pt["adam_beta2"]),
        eps=pt["adam_epsilon"],
    )
    masking = pt["masking"]
    collator = DataCollatorForLanguageModeling(
        tokenizer,
        mlm_probability=masking["probability"],
        mask_replace_prob=masking["mask"],
        random_replace_prob=masking["random"],
        seed=pt["seed"],
    )
    with_nsp = pt["objective"] == "mlm_nsp"
    batches = _batches(documents, tokenizer, pt, collator, with_nsp)

    window: dict[str, list[float]] = {"loss": [], "mlm_loss": [], "nsp_loss": [], "nsp_acc": []}
    started = time.perf_counter()
    metrics: dict[str, Any] = {}
    for step in range(1, pt["steps"] + 1):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with autocast(device):
            out = model(**batch)
        loss = out.loss
        optimizer_step(loss, model, optimizer, scheduler, where=f"pre-training step {step}")

        window["loss"].append(loss.item())
        if with_nsp:
            # BertForPreTraining returns the summed loss; split it to report both objectives.
            nsp_logits = out.seq_relationship_logits.float()
            nsp_loss = torch.nn.functional.cross_entropy(nsp_logits, batch["next_sentence_label"])
            window["nsp_loss"].append(nsp_loss.item())
            window["mlm_loss"].append(loss.item() - nsp_loss.item())
            hits = (nsp_logits.argmax(-1) == batch["next_sentence_label"]).float().mean()
            window["nsp_acc"].append(hits.item())
        else:
            window["mlm_loss"].append(loss.item())
        if step % LOG_EVERY == 0 or step == pt["steps"]:
            metrics = {k: sum(v) / len(v) for k, v in window.items() if v}
            metrics["mlm_perplexity"] = math.exp(min(metrics["mlm_loss"], 50.0))
            metrics |= {
                "step": step,
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - started,
            }
            window = {k: [] for k in window}
            if step < pt["steps"]:
                report(metrics, None)

    model_dir = out_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    report(metrics, model_dir)
    return metrics


def _batches(
    documents: list[list[list[int]]],
    tokenizer,
    pt: dict[str, Any],
    collator: DataCollatorForLanguageModeling,
    with_nsp: bool,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless masked batches; each pass over the corpus draws fresh pairs, like BERT's dupes."""
    rng = random.Random(pt["seed"])
    while True:
        examples = build_pair_examples(
            documents, pt["max_seq_len"], rng, tokenizer.cls_token_id, tokenizer.sep_token_id
        )
        rng.shuffle(examples)
        size = pt["batch_size"]
        for start in range(0, len(examples) - size + 1, size):
            chunk = examples[start : start + size]
            if not with_nsp:
                chunk = [{k: v for k, v in e.items() if k != "next_sentence_label"} for e in chunk]
            yield collator(chunk)
