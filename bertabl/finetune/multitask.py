"""Multi-task fine-tuning (finetune.multitask): one shared encoder, a head per task.

Every optimizer step trains one task's batch through the shared encoder and that task's head.
Which task a step draws from is sampled with probability proportional to n_i^(1/T) (n_i the
task's training examples; T = 1 proportional to dataset size, larger T closer to uniform), from
a generator seeded by (restart seed, epoch), so a resumed epoch replays the same schedule. An
epoch is as many steps as the tasks' examples fill batches; each task's batches walk through
its own shuffled (and length-grouped) stream of examples, reshuffled when it runs out.

Each task is evaluated after every epoch with its own head and metrics. The trial's record holds
every task's metrics as "<task>/dev_<metric>"; `write_views` also writes one record per task, in
the shape of a single-task trial's (dev_<metric>), which report cells of multi-task rows select
from, each task on its own dev metric.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, DataCollatorWithPadding

from bertabl.data.tasks import load_split, task_spec
from bertabl.finetune.recipe import Tuning
from bertabl.finetune.train import _encode, _length, _model, evaluate, length_grouped
from bertabl.finetune.vocab import compact_word_embeddings, readable_ids
from bertabl.training import (
    Precision,
    TrialRuntime,
    seed_everything,
)


class MultiTaskModel(nn.Module):
    """Per-task head models whose `bert` is one shared module (parameters counted once)."""

    def __init__(self, heads: dict[str, nn.Module]):
        super().__init__()
        first, *others = heads.values()
        for head in others:
            head.bert = first.bert
        self.heads = nn.ModuleDict(heads)
        self.config = first.config  # the encoder's (layer count for layer-wise decay)


def sampling_weights(sizes: list[int], temperature: float) -> list[float]:
    """P(task i) = n_i^(1/T) / sum_j n_j^(1/T)."""
    scaled = [n ** (1 / temperature) for n in sizes]
    return [s / sum(scaled) for s in scaled]


def schedule(
    sizes: list[int], batch_size: int, temperature: float, seed: int, epoch: int
) -> list[tuple[int, int]]:
    """The epoch's steps as (task index, that task's batch number within the epoch)."""
    steps = math.ceil(sum(sizes) / batch_size)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    weights = torch.tensor(sampling_weights(sizes, temperature), dtype=torch.float64)
    drawn = torch.multinomial(weights, steps, replacement=True, generator=generator).tolist()
    seen = [0] * len(sizes)
    out = []
    for task in drawn:
        out.append((task, seen[task]))
        seen[task] += 1
    return out


def task_stream(
    lengths: list[int],
    batch_size: int,
    batches: int,
    seed: int,
    epoch: int,
    task: int,
    grouped: bool,
) -> list[int]:
    """Example indices for `batches` batches of one task in `epoch`: shuffled passes over its
    examples (length-grouped within each pass when `grouped`), as many as the batches need."""
    n, stream, cycle = len(lengths), [], 0
    while len(stream) < batches * batch_size:
        seed_of_pass = ((seed * 1_000_003 + epoch) * 1_009 + task) * 10_007 + cycle
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed_of_pass)).tolist()
        stream += length_grouped(order, lengths, batch_size) if grouped else order
        cycle += 1
    return stream


def finetune_multitask(
    config: dict[str, Any], pretrained_dir: Path, out_dir: Path, runtime: TrialRuntime
) -> dict[str, Any]:
    """Train every task of the group on one encoder; returns the last epoch's metrics, per task
    as "<task>/dev_<metric>" (and "<task>/train_loss"), plus the mean "train_loss"."""
    tasks = config["multitask"]["tasks"]
    specs = {t: task_spec(t, config["task_data"][t]) for t in tasks}
    device = runtime.device
    seed = config["seed"]
    seed_everything(seed)
    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    collate = DataCollatorWithPadding(tokenizer)
    encoded = {
        t: {
            split: _encode(load_split(t, split, config["task_data"][t]), tokenizer, config)
            for split in ("train", "dev", *specs[t].extra_dev_splits)
        }
        for t in tasks
    }
    lengths = [[_length(x) for x in encoded[t]["train"]] for t in tasks]
    sizes = [len(x) for x in lengths]
    torch.manual_seed(seed)  # the restart's seed alone decides the heads' initialisation
    model = MultiTaskModel({t: _model(config, pretrained_dir, specs[t]) for t in tasks})
    model = model.to(device)
    splits = [x for per_task in encoded.values() for x in per_task.values()]
    compact_word_embeddings(model, readable_ids(splits, tokenizer))
    precision = Precision.for_device(device, runtime.precision)
    size = config["batch_size"]
    per_epoch = math.ceil(sum(sizes) / size)
    tuning = Tuning(model, config, config["epochs"] * per_epoch)
    losses: dict[str, list[float]]
    epoch, first_batch, step, losses = tuning.resume(runtime, precision, {t: [] for t in tasks})
    history = runtime.history

    def save() -> None:
        tuning.checkpoint(runtime, precision, epoch, first_batch, step, losses)

    started = time.perf_counter()
    metrics: dict[str, Any] = history[-1] if history else {}
    temperature = config["multitask"]["temperature"]
    while epoch <= config["epochs"]:
        model.train()
        tuning.start_epoch(epoch)
        steps = schedule(sizes, size, temperature, seed, epoch)
        streams = [
            task_stream(
                lengths[i],
                size,
                sum(1 for task, _ in steps if task == i),
                seed,
                epoch,
                i,
                config["group_by_length"],
            )
            for i in range(len(tasks))
        ]
        for index in range(first_batch, per_epoch):
            task, number = steps[index]
            name = tasks[task]
            batch = streams[task][number * size : (number + 1) * size]
            items = [encoded[name]["train"][i] for i in batch]
            where = f"multi-task fine-tuning epoch {epoch} ({name})"
            losses[name].append(
                tuning.step(items, collate, precision, where, forward=model.heads[name])
            )
            step += 1
            first_batch = index + 1
            if runtime.due(step) and first_batch < per_epoch:
                save()
        every = [x for t in tasks for x in losses[t]]
        metrics = {"epoch": epoch, "train_loss": sum(every) / len(every)}
        with tuning.evaluation_weights():
            for t in tasks:
                if losses[t]:
                    metrics[f"{t}/train_loss"] = sum(losses[t]) / len(losses[t])
                for split in ("dev", *specs[t].extra_dev_splits):
                    scores = evaluate(
                        model.heads[t],
                        encoded[t][split],
                        collate,
                        config["eval_batch_size"],
                        precision,
                        specs[t],
                    )
                    metrics |= {f"{t}/{split}_{k}": v for k, v in scores.items()}
        history.append(metrics)
        runtime.report(metrics | {"seconds": time.perf_counter() - started})
        epoch, first_batch, losses = epoch + 1, 0, {t: [] for t in tasks}
        if epoch <= config["epochs"]:
            save()
    return metrics


def task_metrics(metrics: dict[str, Any], task: str) -> dict[str, Any]:
    """One task's part of a multi-task trial's metrics, named as a single-task trial's."""
    prefix = f"{task}/"
    own = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
    return {"epoch": metrics["epoch"], **own}


def write_views(store, config: dict[str, Any], metrics: dict[str, Any], history: list) -> None:
    """Write each task's record of the finished multi-task trial (see matrix.plan.view_config),
    before the trial's own record: a done trial always has its views."""
    from bertabl.matrix.plan import trial_id, view_config
    from bertabl.orchestrate.store import DONE

    for task in config["multitask"]["tasks"]:
        view = view_config(config, task)
        store.write_record(
            trial_id("ft", view),
            view,
            DONE,
            metrics=task_metrics(metrics, task),
            history=[task_metrics(entry, task) for entry in history],
        )
