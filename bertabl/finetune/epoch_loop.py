"""The fine-tuning trial body: a pre-trained checkpoint + one task + one grid point + one seed.

A plain function (no Ray inside), like the pre-training body. The task's family
(finetune/families/) encodes the data, builds the model and scores it; this is the loop. The
restart's seed sets both the data order and the head's initialisation, the paper's definition
of a random restart.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer
from transformers.trainer_pt_utils import get_length_grouped_indices

from bertabl.finetune.families import family_of
from bertabl.finetune.families.base import FamilyData, Scored
from bertabl.finetune.kept import save_final
from bertabl.finetune.recipe import Tuning
from bertabl.finetune.vocab import checked_collate, compact_word_embeddings, readable_ids
from bertabl.io import atomic_write
from bertabl.parallel import Group
from bertabl.tasks.catalogue import spec_of
from bertabl.training import Precision, TrialRuntime, seed_everything
from bertabl.trial.files import PREDICTIONS
from bertabl.trial.finetune import FinetuneTrialConfig, MultitaskTrialConfig

# One step of an epoch: (its task, "" for a single-task trial; the batch's items; the module
# that computes its loss, None = the whole model).
Step = tuple[str, list, torch.nn.Module | None]


def finetune(
    config: FinetuneTrialConfig,
    pretrained_dir: Path,
    out_dir: Path,
    runtime: TrialRuntime,
    group: Group | None = None,
) -> dict[str, Any]:
    """Fine-tune and evaluate on dev after every epoch; returns the last epoch's metrics.

    Checkpoints at every epoch end (and every `runtime.checkpoint_every` steps) and resumes from
    the latest one, with the same result as an uninterrupted run. `group`: this process's rank
    of a data-parallel trial (every rank calls this); None = a single process.
    """
    data, model = prepare(config, pretrained_dir, runtime)
    size = len(data.train)

    def epoch_steps(epoch: int) -> Callable[[int], Step]:
        # The epoch's order depends only on (seed, epoch), so a resumed epoch replays it exactly.
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        lengths = data.lengths if config.group_by_length else None
        order = epoch_order(size, config.batch_size, generator, lengths)
        batch = config.batch_size
        return lambda i: ("", [data.train[j] for j in order[i * batch : (i + 1) * batch]], None)

    scored: dict[str, Scored] = {}

    def evaluate(precision: Precision) -> dict[str, Any]:
        scores = {}
        for split in data.splits:
            scored[split] = data.evaluate(model, split, precision)
            scores |= {f"{split}_{k}": v for k, v in scored[split].metrics.items()}
        return scores

    def keep() -> None:  # after the last evaluation, with the weights it evaluated
        write_predictions(out_dir / PREDICTIONS, scored)
        save_final(model, out_dir)

    steps_per_epoch = math.ceil(size / config.batch_size)
    return train_epochs(
        config, model, runtime, steps_per_epoch, epoch_steps, lambda _: data.collate, evaluate,
        finish=keep, group=group,
    )  # fmt: skip


def prepare(
    config: FinetuneTrialConfig,
    pretrained_dir: Path,
    runtime: TrialRuntime,
    splits: tuple[str, ...] | None = None,
) -> tuple[FamilyData, torch.nn.Module]:
    """The trial's task data (`splits`; default: train and the dev splits; () reads no data)
    and its model: the pre-trained encoder with the trial's head, seeded by the restart, on the
    device."""
    spec = spec_of(config.task, config.task_data)
    seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    family = family_of(spec, config.head)
    data = family(spec, config, config.task_data, tokenizer, pretrained_dir, runtime, splits)
    # Seeded right before loading, so the restart's seed alone decides the head's init.
    torch.manual_seed(config.seed)
    model = data.build_model().to(runtime.device)
    if splits is None and (read := data.readable()) is not None:
        compact_word_embeddings(model, readable_ids(read, tokenizer))  # same numbers, less work
    # Every batch of the trial (training and evaluation: the family's methods call
    # self.collate) checked on the host before it reaches the device.
    data.collate = checked_collate(data.collate, model)
    return data, model


def write_predictions(folder: Path, scored: dict[str, Scored]) -> None:
    """`folder/<split>.jsonl` (a trial's `predictions/`): one JSON line an example, in file
    order, that the official scripts (conlleval, SQuAD's evaluate) can re-score."""
    for split, result in scored.items():
        lines = "".join(json.dumps(line, allow_nan=False) + "\n" for line in result.predictions)
        atomic_write(Path(folder) / f"{split}.jsonl", lines.encode())


def train_epochs(
    config: FinetuneTrialConfig | MultitaskTrialConfig,
    model: torch.nn.Module,
    runtime: TrialRuntime,
    steps_per_epoch: int,
    epoch_steps: Callable[[int], Callable[[int], Step]],
    collate_for: Callable[[str], Callable[[list], dict[str, torch.Tensor]]],
    evaluate: Callable[[Precision], dict[str, Any]],
    tasks: list[str] | None = None,
    finish: Callable[[], None] | None = None,
    group: Group | None = None,
) -> dict[str, Any]:
    """The epoch loop of single- and multi-task fine-tuning: steps, checkpoints, evaluation.

    `epoch_steps(epoch)(i)` is step i of that epoch; `collate_for(task)` turns a step's items
    into a batch; `evaluate` scores the model after each epoch. With `tasks` (a multi-task
    trial), losses are kept per task and reported as "<task>/train_loss" beside the mean.
    `finish()` runs after the last epoch's evaluation, with the weights it evaluated (the EMA's
    when the recipe averages): what the trial keeps.
    In a data-parallel trial every rank runs this loop on its share of each batch (see
    Tuning.step); rank 0 alone evaluates, and the others get its scores.
    """
    precision = Precision.for_device(runtime.device, runtime.precision)
    group = group or Group.single(runtime.device)
    # The recipe (finetune/recipe.py): parameter groups, freezing, accumulation, EMA.
    tuning = Tuning(model, config, config.epochs * steps_per_epoch, group=group)
    empty = (lambda: {t: [] for t in tasks}) if tasks else list
    losses: Any
    epoch, first_batch, step, losses = tuning.resume(runtime, precision, empty())
    history = runtime.history

    def save() -> None:
        tuning.checkpoint(runtime, precision, epoch, first_batch, step, losses)

    started = time.perf_counter()
    metrics: dict[str, Any] = history[-1] if history else {}
    while epoch <= config.epochs:
        model.train()
        tuning.start_epoch(epoch)
        steps = epoch_steps(epoch)
        for index in range(first_batch, steps_per_epoch):
            task, items, forward = steps(index)
            if task:
                where = f"multi-task fine-tuning epoch {epoch} ({task})"
            else:
                where = f"fine-tuning epoch {epoch}"
            loss = tuning.step(items, collate_for(task), precision, where, forward=forward)
            (losses[task] if tasks else losses).append(loss)
            step += 1
            first_batch = index + 1
            if runtime.due(step) and first_batch < steps_per_epoch:
                save()
        every = [x for t in tasks for x in losses[t]] if tasks else losses
        metrics = {"epoch": epoch, "train_loss": sum(every) / len(every)}
        with tuning.evaluation_weights():  # the EMA weights, when the recipe keeps them
            for task in tasks or ():
                if losses[task]:
                    metrics[f"{task}/train_loss"] = sum(losses[task]) / len(losses[task])
            if group.is_main:
                metrics |= evaluate(precision)
                if finish is not None and epoch == config.epochs:
                    finish()
        metrics = group.broadcast(metrics)  # every rank's history and report: rank 0's scores
        history.append(metrics)
        runtime.report(metrics | {"seconds": time.perf_counter() - started})
        epoch, first_batch, losses = epoch + 1, 0, empty()
        if epoch <= config.epochs:
            save()
    return metrics


def epoch_order(
    size: int, batch_size: int, generator: torch.Generator, lengths: list[int] | None = None
) -> list[int]:
    """The order of one pass over `size` training examples: a permutation drawn from
    `generator` or, given the examples' `lengths`, length-grouped batches in random order.

    The batches are those of transformers' LengthGroupedSampler (its function, with the same
    generator: the permutation cut into groups of at most 50 batches, each sorted longest
    first), so a batch's examples have similar lengths and dynamic padding adds little. The
    sampler then visits each group's batches longest to shortest: a length curriculum repeated
    every 50 batches, and length goes with the label in real data (STS-B: news pairs are long
    and score higher than image captions). That cost bertabl up to 40 points of STS-B Pearson
    against the Trainer's plain random order (bench/parity, seed 1: 31.7 vs 72.4), so the
    batches are visited in a seeded random order instead: the longest first (a batch too big
    for the device fails at once, as the sampler intends), the one short batch last."""
    if lengths is None:
        return torch.randperm(size, generator=generator).tolist()
    grouped = get_length_grouped_indices(lengths, batch_size, generator=generator)
    batches = [grouped[i : i + batch_size] for i in range(0, size, batch_size)]
    # The sampler's one short batch is its last (the last group's shortest examples).
    short = [batches.pop()] if len(batches) > 1 and len(batches[-1]) < batch_size else []
    longest, rest = batches[0], batches[1:]
    shuffled = [rest[i] for i in torch.randperm(len(rest), generator=generator).tolist()]
    return [i for batch in (longest, *shuffled, *short) for i in batch]
