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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling

from bertabl.data.corpus import load_corpus
from bertabl.data.tokenizer import build_tokenizer
from bertabl.errors import DataError
from bertabl.pretrain.examples import build_pair_examples
from bertabl.pretrain.model import build_model
from bertabl.training import (
    TrialRuntime,
    adamw_with_schedule,
    autocast,
    optimizer_step,
    rng_state,
    seed_everything,
    set_rng_state,
)

LOG_EVERY = 25
WINDOW_KEYS = ("loss", "mlm_loss", "nsp_loss", "nsp_acc")


def pretrain(config: dict[str, Any], out_dir: Path, runtime: TrialRuntime) -> dict[str, Any]:
    """Run one pre-training trial; saves model + tokenizer to `out_dir/model`; returns metrics.

    Resumes from the runtime's latest checkpoint when there is one; the result is then the same,
    to the bit on CPU, as a run that was never interrupted.
    """
    pt = config["pretrain"]
    device = runtime.device
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
    collator.create_rng()  # created now (not on first call) so its state can be saved/restored
    with_nsp = pt["objective"] == "mlm_nsp"

    step, position = 0, (0, 0)  # (pass over the corpus, batch within the pass)
    window: dict[str, list[float]] = {k: [] for k in WINDOW_KEYS}
    history: list[dict[str, Any]] = []
    state = runtime.resume_state()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        collator.generator.set_state(state["masking_rng"])
        set_rng_state(state["rng"])
        step, position = state["step"], tuple(state["position"])
        window, history = state["window"], state["history"]
    batches = _batches(documents, tokenizer, pt, collator, with_nsp, position)

    started = time.perf_counter()
    metrics: dict[str, Any] = history[-1] if history else {}
    while step < pt["steps"]:
        step += 1
        batch, position = next(batches)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
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
            metrics |= {"step": step, "lr": scheduler.get_last_lr()[0]}
            history.append(metrics)
            window = {k: [] for k in WINDOW_KEYS}
            if step < pt["steps"]:
                runtime.report(metrics | {"seconds": time.perf_counter() - started}, None)
        if runtime.due(step) and step < pt["steps"]:
            runtime.save(
                step,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "masking_rng": collator.generator.get_state(),
                    "rng": rng_state(),
                    "step": step,
                    "position": position,
                    "window": window,
                    "history": history,
                },
            )

    model_dir = out_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    runtime.report(metrics | {"seconds": time.perf_counter() - started}, model_dir)
    return metrics


def _batches(
    documents: list[list[list[int]]],
    tokenizer,
    pt: dict[str, Any],
    collator: DataCollatorForLanguageModeling,
    with_nsp: bool,
    position: tuple[int, int],
) -> Iterator[tuple[dict[str, torch.Tensor], tuple[int, int]]]:
    """Endless (masked batch, position after it) from `position` on.

    Each pass over the corpus draws fresh pairs (like BERT's duplication factor) from an RNG
    seeded by (seed, pass), so any position can be rebuilt exactly on resume.
    """
    pass_index, first_batch = position
    size = pt["batch_size"]
    while True:
        rng = random.Random(f"{pt['seed']}/pass/{pass_index}")
        examples = build_pair_examples(
            documents, pt["max_seq_len"], rng, tokenizer.cls_token_id, tokenizer.sep_token_id
        )
        rng.shuffle(examples)
        n_batches = len(examples) // size
        if n_batches == 0:
            raise DataError(
                f"the corpus yields {len(examples)} pre-training examples per pass, fewer than "
                f"pretrain.batch_size = {size}; use a larger corpus or a smaller batch size"
            )
        for index in range(first_batch, n_batches):
            chunk = examples[index * size : (index + 1) * size]
            if not with_nsp:
                chunk = [{k: v for k, v in e.items() if k != "next_sentence_label"} for e in chunk]
            after = (pass_index, index + 1) if index + 1 < n_batches else (pass_index + 1, 0)
            yield collator(chunk), after
        pass_index, first_batch = pass_index + 1, 0
