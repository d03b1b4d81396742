"""The pre-training trial body: corpus -> pair examples -> masked batches -> trained encoder.

A plain function (no Ray inside) so it can run in a Tune trial, a test, or a benchmark loop.
The loop is written out rather than using HF `Trainer`: a Tune trial must report metrics and
checkpoints on its own schedule, and the loop is the place later speed work (packing, sparse MLM
decoding) goes.

One optimizer step per global batch of `pretrain.batch_size` sequences. A data-parallel trial
runs this body in each of its k Ray Train workers, each given its `Group` (see `parallel.py`);
each process splits its share of the batch into micro-batches of `runtime.micro_batch_size` and
accumulates their gradients, so the batch size is a property of the experiment, not of the
hardware: any layout gives the same gradient (up to float rounding) and the same logged losses.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from bertabl.data.corpus import load_corpus, tokenized_corpus
from bertabl.data.tokenizer import build_tokenizer
from bertabl.errors import DataError
from bertabl.pretrain.examples import build_pair_examples
from bertabl.pretrain.masking import masking_collator
from bertabl.pretrain.model import ChunkedLeftToRightLM, MaskedPositionsLM, build_model, lm_module
from bertabl.pretrain.parallel import Group, rank_seed
from bertabl.pretrain.perplexity import heldout_metrics, split_heldout
from bertabl.training import IGNORE_INDEX as IGNORE  # the tokens MLM does not predict
from bertabl.training import (
    Precision,
    TrialRuntime,
    adamw_with_schedule,
    apply_gradients,
    bert_parameter_groups,
    restore_training_state,
    rng_state,
    seed_everything,
    set_rng_state,
    to_device,
    training_state,
    use_deterministic_algorithms,
)
from bertabl.trial.files import model_dir_name
from bertabl.trial.layout import BatchLayout, batch_layout
from bertabl.trial.pretrain import PretrainConfig, PretrainTrialConfig

LOG_EVERY = 25
WINDOW_KEYS = ("loss", "mlm_loss", "nsp_loss", "nsp_acc")
LABEL_KEYS = ("labels", "next_sentence_label")
# Held-out batches have a fixed size, not the trial's micro-batch size: masks are drawn per padded
# batch, so the scored positions must not depend on the hardware layout.
HELDOUT_BATCH = 32


def pretrain(
    config: PretrainTrialConfig,
    out_dir: Path,
    runtime: TrialRuntime,
    group: Group | None = None,
) -> dict[str, Any]:
    """Run one pre-training trial; saves model + tokenizer to `out_dir/model`; returns metrics.

    Resumes from the runtime's latest checkpoint when there is one; the result is then the same,
    to the bit on CPU, as a run that was never interrupted (with the same number of workers).
    `group`: this process's rank of a data-parallel trial (every rank calls this; rank 0 alone
    writes files, checkpoints and the model); None = a single process.
    """
    group = group or Group.single(runtime.device)
    layout = batch_layout(config.pretrain.batch_size, group.world, runtime.micro_batch_size)
    tokenizer = None
    if group.is_main:
        tokenizer = build_tokenizer(
            config.data,
            out_dir / "vocab",
            vocab_size=config.pretrain.vocab_size,
            documents=load_corpus(config.data) if config.trained_vocabulary else None,
            cache_dir=runtime.cache_dir,
        )
    tokenizer = group.broadcast(tokenizer)  # pickled to the other ranks: only rank 0 writes
    if config.pretrain.objective == "none":
        return _untrained(config, tokenizer, out_dir, runtime, group)
    return _train(config, tokenizer, out_dir, runtime, group, layout)


def _untrained(
    config: PretrainTrialConfig,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    runtime: TrialRuntime,
    group: Group,
) -> dict[str, Any]:
    """`objective = "none"`: the model as initialised from the trial's seed, saved like a
    pre-trained one so fine-tuning reads it the same way (the no-pre-training control)."""
    metrics: dict[str, Any] = {"step": 0}
    if group.is_main:
        started = time.perf_counter()
        pt = config.pretrain
        seed_everything(pt.seed)
        model = build_model(pt.objective, pt.model, len(tokenizer), tokenizer.pad_token_id)
        _save_model(model, tokenizer, out_dir / model_dir_name())
        runtime.report(metrics | {"seconds": time.perf_counter() - started})
    return metrics


def _train(
    config: PretrainTrialConfig,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    runtime: TrialRuntime,
    group: Group,
    layout: BatchLayout,
) -> dict[str, Any]:
    """The training loop of one rank (the only one when `group.world` is 1)."""
    pt = config.pretrain
    device = group.device
    use_deterministic_algorithms(runtime.deterministic)  # this process's torch flags
    seed_everything(pt.seed)
    documents = tokenized_corpus(config.data, tokenizer, runtime.cache_dir)
    documents, heldout = split_heldout(documents, pt.heldout_fraction, pt.seed)
    phases = pt.phases()
    model = build_model(pt.objective, pt.model, len(tokenizer), tokenizer.pad_token_id).to(device)
    model.train()
    optimizer, scheduler = adamw_with_schedule(
        bert_parameter_groups(model, pt.weight_decay),
        pt.learning_rate,
        pt.steps,
        pt.warmup_fraction,
        betas=(pt.adam_beta1, pt.adam_beta2),
        eps=pt.adam_epsilon,
    )
    precision = Precision.for_device(device, runtime.precision)
    collator = masking_collator(tokenizer, pt.objective, pt.masking, pt.seed)
    with_nsp = pt.objective == "mlm_nsp"

    # (phase of the sequence-length schedule, pass over the corpus, batch within the pass)
    step, position = 0, (0, 0, 0)
    window: dict[str, list[float]] = {k: [] for k in WINDOW_KEYS}
    history = runtime.history  # the trial record's history: restored entries + new ones
    state = _shared_resume_state(runtime, group)
    if state is None:
        if not group.is_main:  # ranks draw different dropout masks for their slices
            seed_everything(rank_seed(pt.seed, group.rank, 0))
    else:
        # only rank 0's state has the weights; wrapping the model for DDP copies them to the rest
        restore_training_state(state, model, optimizer, scheduler, precision)
        collator.generator.set_state(state["masking_rng"])
        _restore_rank_rng(state, group, pt.seed)
        step, position = state["step"], tuple(state["position"])
        window = state["window"]
        history.extend(state["history"])
    # MLM decodes the vocabulary only at masked positions; LTR predicts every one (dense, or in
    # chunks when one micro-batch's logits would be too large).
    net = group.wrap(lm_module(model, pt.objective, layout.micro_batch_size * pt.max_seq_len))
    batches = None
    # A finished trial run again for intermediate models it did not keep stops after the last.
    last = max(runtime.save_steps, default=0) if runtime.intermediate_only else pt.steps

    started = time.perf_counter()
    metrics: dict[str, Any] = history[-1] if history else {}
    while step < last:
        step += 1
        phase = next(i for i, (end, _) in enumerate(phases) if step <= end)
        if phase != position[0]:  # a new sequence length: its own data stream from the start
            position, batches = (phase, 0, 0), None
        if batches is None:
            seq_len = phases[phase][1]
            batches = _batches(documents, tokenizer, pt, collator, with_nsp, position, seq_len)
        batch, position = next(batches)
        mlm_loss, nsp_loss, nsp_acc = _accumulate_gradients(
            net, batch, layout, group, with_nsp, precision
        )
        loss = mlm_loss + nsp_loss
        where = f"pre-training step {step}"
        apply_gradients(loss, model, optimizer, scheduler, where, precision)

        window["loss"].append(loss)
        window["mlm_loss"].append(mlm_loss)
        if with_nsp:
            window["nsp_loss"].append(nsp_loss)
            window["nsp_acc"].append(nsp_acc)
        if step % LOG_EVERY == 0 or step == pt.steps:
            metrics = {k: sum(v) / len(v) for k, v in window.items() if v}
            metrics["mlm_perplexity"] = math.exp(min(metrics["mlm_loss"], 50.0))
            if pt.objective == "ltr":  # same numbers, named for what they measure
                metrics["ltr_loss"] = metrics.pop("mlm_loss")
                metrics["ltr_perplexity"] = metrics.pop("mlm_perplexity")
            metrics |= {"step": step, "lr": scheduler.get_last_lr()[0]}
            history.append(metrics)
            window = {k: [] for k in WINDOW_KEYS}
            if step < pt.steps:  # every rank: under Ray Train a report is a barrier
                runtime.report(metrics | {"seconds": time.perf_counter() - started})
        if step in runtime.save_steps and step < pt.steps and group.is_main:
            _save_model(model, tokenizer, out_dir / model_dir_name(step))
        if runtime.due(step) and step < pt.steps:
            rngs = group.gather(rng_state(device))  # every rank takes part; rank 0 writes
            if group.is_main:
                runtime.save(
                    step,
                    {
                        **training_state(model, optimizer, scheduler, precision),
                        "masking_rng": collator.generator.get_state(),
                        "rng": rngs[0],
                        "worker_rng": rngs[1:],  # ranks 1..k-1 (dropout differs per rank)
                        "step": step,
                        "position": position,
                        "window": window,
                        "history": history,
                    },
                )

    if runtime.intermediate_only:
        return metrics  # the final model (which fine-tunes read) and the record stay as they were
    if group.is_main:
        if heldout:
            metrics = {
                **metrics,
                **_heldout(model, heldout, tokenizer, pt, device, precision),
            }
        _save_model(model, tokenizer, out_dir / model_dir_name())
    runtime.report(metrics | {"seconds": time.perf_counter() - started})  # every rank, as above
    return metrics


def _heldout(
    model: torch.nn.Module,
    documents: list[list[list[int]]],
    tokenizer: PreTrainedTokenizerBase,
    pt: PretrainConfig,
    device: torch.device,
    precision: Precision,
) -> dict[str, float]:
    """Held-out metrics of the final model, at max_seq_len. Examples and masks come from their
    own seeds (not the training RNGs), so models that share a corpus and masking config (Table
    6's sizes, Table 5's MLM rows) are scored on the same positions of the same inputs."""
    rng = random.Random(f"{pt.seed}/heldout/pairs")
    examples = build_pair_examples(
        documents, pt.max_seq_len, rng, tokenizer.cls_token_id, tokenizer.sep_token_id
    )[: pt.heldout_examples]
    collator = masking_collator(tokenizer, pt.objective, pt.masking, pt.seed + 1)
    with_nsp = pt.objective == "mlm_nsp"
    batches = []
    for start in range(0, len(examples), HELDOUT_BATCH):
        chunk = examples[start : start + HELDOUT_BATCH]
        if not with_nsp:
            chunk = [{k: v for k, v in e.items() if k != "next_sentence_label"} for e in chunk]
        batch = collator(chunk)
        if pt.objective == "ltr":
            batch["labels"] = next_token_labels(batch["labels"])
        batches.append(batch)
    return heldout_metrics(model, batches, pt.objective, device, precision.autocast)


def _save_model(model, tokenizer, directory: Path) -> None:
    # Written beside, then renamed: a kill mid-save never leaves a half model under the name.
    partial = directory.with_name(directory.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if directory.exists():
        shutil.rmtree(directory)
    partial.rename(directory)


def next_token_labels(labels: torch.Tensor) -> torch.Tensor:
    """Left-to-right targets: position t is trained to predict token t+1 (padding and the last
    position predict nothing). Shifting here lets the MLM loss code serve LTR unchanged."""
    shifted = torch.full_like(labels, IGNORE)
    shifted[:, :-1] = labels[:, 1:]
    return shifted


def _accumulate_gradients(
    net: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    layout: BatchLayout,
    group: Group,
    with_nsp: bool,
    precision: Precision,
) -> tuple[float, float, float]:
    """Forward and backward over this rank's micro-batches of the global `batch`, leaving the
    global batch's gradient in the parameters; returns its (mlm_loss, nsp_loss, nsp_acc).

    Loss scaling. The full-batch MLM loss is the mean over all masked tokens of the global
    batch, so a micro-batch contributes the sum of its masked-token losses divided by the
    global batch's masked-token count: HF's per-micro-batch mean weighted by the micro-batch's
    share of the masked tokens, not by its share of sequences (micro-batches hold different
    numbers of masked tokens). NSP is a mean over sequences: sum / global batch size. The
    contributions of all micro-batches of all ranks then add up to the full-batch loss. The
    losses are computed here from the logits (not taken from HF's `loss`) to get both parts as
    tensors and no NaN for a micro-batch without masked tokens. Backward runs on `world` times
    the contribution, as DDP averages gradients over ranks rather than summing them.
    """
    device = group.device
    masked_tokens = max(1, int((batch["labels"] != IGNORE).sum()))
    micro_batches = layout.micro_batches(batch, group.rank)
    sparse = isinstance(_unwrapped(net), MaskedPositionsLM)
    chunked = isinstance(_unwrapped(net), ChunkedLeftToRightLM)
    totals = torch.zeros(3, device=device)  # mlm_loss, nsp_loss, nsp_acc of the global batch
    for index, micro in enumerate(micro_batches):
        if sparse or chunked:  # found on the CPU, before the copy: no device->host sync
            flat = micro["labels"].flatten()
            micro = micro | {"masked_positions": (flat != IGNORE).nonzero().squeeze(1)}
        micro = to_device(micro, device)
        inputs = {k: v for k, v in micro.items() if k not in LABEL_KEYS}
        if chunked:  # it computes the loss itself, chunk by chunk
            inputs["labels"] = micro["labels"]
        with group.accumulating(net, skip_sync=index < len(micro_batches) - 1):
            with precision.autocast():
                out = net(**inputs)
            if chunked:
                mlm = out  # the loss summed over the predicted positions (no NSP with LTR)
            else:
                if sparse:
                    mlm_logits, nsp_logits = out
                    targets = micro["labels"].flatten().index_select(0, micro["masked_positions"])
                else:
                    mlm_logits = (out.prediction_logits if with_nsp else out.logits).flatten(0, 1)
                    nsp_logits = out.seq_relationship_logits if with_nsp else None
                    targets = micro["labels"].flatten()
                mlm = torch.nn.functional.cross_entropy(
                    mlm_logits.float(), targets, ignore_index=IGNORE, reduction="sum"
                )
            parts = [mlm / masked_tokens]
            if with_nsp:
                nsp_logits = nsp_logits.float()
                labels = micro["next_sentence_label"]
                nsp = torch.nn.functional.cross_entropy(nsp_logits, labels, reduction="sum")
                hits = (nsp_logits.argmax(-1) == labels).sum()
                parts += [nsp / layout.batch_size, hits.float() / layout.batch_size]
            precision.backward(sum(parts[:2]) * group.world)
        totals[: len(parts)] += torch.stack(parts).detach()
    mlm_loss, nsp_loss, nsp_acc = group.sum(totals).tolist()
    return mlm_loss, nsp_loss, nsp_acc


def _unwrapped(net: torch.nn.Module) -> torch.nn.Module:
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def _shared_resume_state(runtime: TrialRuntime, group: Group) -> dict[str, Any] | None:
    """Rank 0's latest checkpoint, on every rank; ranks > 0 get it without the model weights."""
    state = runtime.resume_state() if group.is_main else None
    if group.world == 1:
        return state
    shared = group.broadcast({k: v for k, v in state.items() if k != "model"} if state else None)
    return state if group.is_main else shared


def _restore_rank_rng(state: dict[str, Any], group: Group, seed: int) -> None:
    """This rank's RNG state from the checkpoint. A run resumed with another worker count is
    not exact anyway; its new ranks get seeds derived from (seed, rank, step)."""
    if group.is_main:
        set_rng_state(state["rng"], group.device)
        return
    saved = state.get("worker_rng", [])
    if len(saved) == group.world - 1:
        set_rng_state(saved[group.rank - 1], group.device)
    else:
        seed_everything(rank_seed(seed, group.rank, state["step"]))


def _batches(
    documents: list[list[list[int]]],
    tokenizer,
    pt: PretrainConfig,
    collator: DataCollatorForLanguageModeling,
    with_nsp: bool,
    position: tuple[int, int, int],
    seq_len: int,
) -> Iterator[tuple[dict[str, torch.Tensor], tuple[int, int, int]]]:
    """Endless (masked global batch, position after it) from `position` on.

    Each pass over the corpus draws fresh pairs (like BERT's duplication factor) from an RNG
    seeded by (seed, phase, pass), so any position can be rebuilt exactly on resume. Every
    data-parallel rank builds the same global batches and takes its own slice of each. Each
    phase of the sequence-length schedule builds its pairs at its own `seq_len`.
    """
    phase, pass_index, first_batch = position
    size = pt.batch_size
    while True:
        tag = f"/phase/{phase}" if phase else ""  # phase 0 keeps the unscheduled seeds
        rng = random.Random(f"{pt.seed}{tag}/pass/{pass_index}")
        examples = build_pair_examples(
            documents, seq_len, rng, tokenizer.cls_token_id, tokenizer.sep_token_id
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
            after = (
                (phase, pass_index, index + 1)
                if index + 1 < n_batches
                else (phase, pass_index + 1, 0)
            )
            batch = collator(chunk)
            if pt.objective == "ltr":
                batch["labels"] = next_token_labels(batch["labels"])
            yield batch, after
        pass_index, first_batch = pass_index + 1, 0
