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
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer

from bertabl.finetune.epoch_loop import epoch_order, train_epochs, write_predictions
from bertabl.finetune.families import family_of
from bertabl.finetune.families.base import Scored
from bertabl.finetune.vocab import checked_collate, compact_word_embeddings, readable_ids
from bertabl.parallel import Group
from bertabl.tasks.catalogue import spec_of
from bertabl.training import Precision, TrialRuntime, seed_everything
from bertabl.trial.files import PREDICTIONS
from bertabl.trial.finetune import MultitaskTrialConfig


class MultiTaskModel(nn.Module):
    """Per-task head models whose `bert` is one shared module (parameters counted once)."""

    def __init__(self, heads: dict[str, nn.Module]):
        super().__init__()
        first, *others = heads.values()
        prefix = first.base_model_prefix  # "bert", "roberta", ...: the encoder's module name
        for head in others:
            setattr(head, prefix, getattr(first, prefix))
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
        generator = torch.Generator().manual_seed(seed_of_pass)
        stream += epoch_order(n, batch_size, generator, lengths if grouped else None)
        cycle += 1
    return stream


def finetune_multitask(
    config: MultitaskTrialConfig,
    pretrained_dir: Path,
    out_dir: Path,
    runtime: TrialRuntime,
    group: Group | None = None,
) -> dict[str, Any]:
    """Train every task of the group on one encoder; returns the last epoch's metrics, per task
    as "<task>/dev_<metric>" (and "<task>/train_loss"), plus the mean "train_loss". `group`:
    this process's rank of a data-parallel trial; None = a single process."""
    tasks = config.tasks
    device = runtime.device
    seed = config.seed
    seed_everything(seed)
    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    data = {}
    for task in tasks:
        spec = spec_of(task, config.task_data[task])
        family = family_of(spec, config.head)
        task_data = config.task_data[task]
        data[task] = family(spec, config, task_data, tokenizer, pretrained_dir, runtime)
    sizes = [len(data[t].train) for t in tasks]
    torch.manual_seed(seed)  # the restart's seed alone decides the heads' initialisation
    model = MultiTaskModel({t: data[t].build_model() for t in tasks}).to(device)
    read = [items for t in tasks for items in data[t].readable()]
    compact_word_embeddings(model, readable_ids(read, tokenizer))
    for t in tasks:  # as in finetune(): ids checked on the host (the heads share one encoder)
        data[t].collate = checked_collate(data[t].collate, model.heads[t])
    size = config.batch_size

    def epoch_steps(epoch: int):
        steps = schedule(sizes, size, config.multitask.temperature, seed, epoch)
        streams = [
            task_stream(
                data[t].lengths,
                size,
                sum(1 for task, _ in steps if task == i),
                seed,
                epoch,
                i,
                config.group_by_length,
            )
            for i, t in enumerate(tasks)
        ]

        def step(index: int):
            task, number = steps[index]
            name = tasks[task]
            batch = streams[task][number * size : (number + 1) * size]
            return name, [data[name].train[i] for i in batch], model.heads[name]

        return step

    scored: dict[str, dict[str, Scored]] = {t: {} for t in tasks}

    def evaluate(precision: Precision) -> dict[str, Any]:
        scores = {}
        for t in tasks:
            for split in data[t].splits:
                scored[t][split] = result = data[t].evaluate(model.heads[t], split, precision)
                scores |= {f"{t}/{split}_{k}": v for k, v in result.metrics.items()}
        return scores

    def keep() -> None:  # each task's predictions, for its view (orchestrate/trainables.py)
        for t in tasks:
            write_predictions(out_dir / PREDICTIONS / t, scored[t])

    steps_per_epoch = math.ceil(sum(sizes) / size)
    collate_for = lambda task: data[task].collate  # noqa: E731 - one collator per task
    return train_epochs(
        config,
        model,
        runtime,
        steps_per_epoch,
        epoch_steps,
        collate_for,
        evaluate,
        tasks,
        keep,
        group,
    )


def task_metrics(metrics: dict[str, Any], task: str) -> dict[str, Any]:
    """One task's part of a multi-task trial's metrics, named as a single-task trial's."""
    prefix = f"{task}/"
    own = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
    return {"epoch": metrics["epoch"], **own}
