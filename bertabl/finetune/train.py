"""The fine-tuning trial body: a pre-trained checkpoint + one task + one grid point + one seed.

A plain function (no Ray inside), like the pre-training body. The restart's seed sets both the
data order and the classifier's initialisation, the paper's definition of a random restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding

from bertabl.data.tasks import TASKS, load_split
from bertabl.finetune import metrics as task_metrics
from bertabl.training import adamw_with_schedule, autocast, optimizer_step, seed_everything

Reporter = Callable[[dict[str, Any], Path | None], None]


def finetune(
    config: dict[str, Any],
    pretrained_dir: Path,
    out_dir: Path,
    report: Reporter,
    device: torch.device,
) -> dict[str, Any]:
    """Fine-tune and evaluate on dev after every epoch; returns the last epoch's metrics."""
    spec = TASKS[config["task"]]
    seed_everything(config["seed"])
    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    train = _encode(load_split(spec.name, "train", config["task_data"]), tokenizer, config)
    dev = _encode(load_split(spec.name, "dev", config["task_data"]), tokenizer, config)
    # Seeded right before loading, so the restart's seed alone decides the head's init.
    torch.manual_seed(config["seed"])
    model = BertForSequenceClassification.from_pretrained(
        pretrained_dir, num_labels=spec.num_labels
    ).to(device)

    collate = DataCollatorWithPadding(tokenizer)  # dynamic padding: pad to the batch's longest
    order = torch.Generator().manual_seed(config["seed"])
    loader = DataLoader(
        train, batch_size=config["batch_size"], shuffle=True, generator=order, collate_fn=collate
    )
    total_steps = config["epochs"] * len(loader)
    optimizer, scheduler = adamw_with_schedule(
        model,
        config["learning_rate"],
        config["weight_decay"],
        total_steps,
        config["warmup_fraction"],
    )
    started = time.perf_counter()
    metrics: dict[str, Any] = {}
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        losses = []
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(device):
                loss = model(**batch).loss
            optimizer_step(loss, model, optimizer, scheduler, where=f"fine-tuning epoch {epoch}")
            losses.append(loss.detach())
        dev_scores = evaluate(model, dev, collate, config["eval_batch_size"], device, spec.metrics)
        metrics = {
            "epoch": epoch,
            "train_loss": torch.stack(losses).mean().item(),
            **{f"dev_{name}": value for name, value in dev_scores.items()},
            "seconds": time.perf_counter() - started,
        }
        report(metrics, None)
    return metrics


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset,
    collate,
    batch_size: int,
    device: torch.device,
    metric_names: tuple[str, ...],
) -> dict[str, float]:
    """The task's metrics on `dataset` (batched, no gradients, dropout off)."""
    model.eval()
    predictions, references = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        labels = batch.pop("labels")
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            logits = model(**batch).logits
        predictions.append(logits.argmax(-1).cpu())
        references.append(labels)
    preds = torch.cat(predictions).numpy()
    refs = torch.cat(references).numpy()
    return {name: task_metrics.METRICS[name](preds, refs) for name in metric_names}


def _encode(dataset, tokenizer, config: dict[str, Any]):
    """Tokenise once, unpadded (the collator pads per batch)."""
    pair = "text_b" in dataset.column_names

    def tokenize(batch):
        args = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
        return tokenizer(*args, truncation=True, max_length=config["max_seq_len"])

    removed = [c for c in dataset.column_names if c != "label"]
    encoded = dataset.map(tokenize, batched=True, remove_columns=removed)
    # Plain dicts of lists are what DataCollatorWithPadding pads; reading the columns once avoids
    # a per-row Arrow lookup in every epoch.
    columns = {c: encoded[c] for c in encoded.column_names}
    columns["labels"] = columns.pop("label")
    return [{c: values[i] for c, values in columns.items()} for i in range(len(encoded))]
