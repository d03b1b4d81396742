"""The pre-training trial body: token store -> lazy pairs -> masked batches -> trained encoder.

A plain function (no Ray inside) so it can run in a Tune trial, a test, or a benchmark loop.
The loop is written out rather than using HF `Trainer`: a Tune trial must report metrics and
checkpoints on its own schedule, and the loop is the place later speed work (packing, sparse MLM
decoding) goes.

One optimizer step per global batch of `pretrain.batch_size` sequences. A data-parallel trial
runs this body in each of its k Ray Train workers, each given its `Group` (bertabl/parallel.py);
each process splits its share of the batch into micro-batches of `runtime.micro_batch_size` and
accumulates their gradients, so the batch size is a property of the experiment, not of the
hardware: any layout gives the same gradient (up to float rounding) and the same logged losses.

Data: the corpus is read from the run's token store (data/token_store.py, memory-mapped; built
before the trial by the run's data preparation), pairs are drawn lazily (pairs.py), and each rank
collates and masks only its own rows of every global batch (batches.py) on a background thread.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from bertabl.data.corpus import iter_pieces
from bertabl.data.token_store import TokenStore, trial_store
from bertabl.data.tokenizer import build_tokenizer
from bertabl.errors import DataError
from bertabl.parallel import Group, rank_seed
from bertabl.pretrain.batches import Prefetcher, collate, rank_steps
from bertabl.pretrain.masking import Masker
from bertabl.pretrain.model import ChunkedLeftToRightLM, MaskedPositionsLM
from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.pretrain.pairs import PairStream
from bertabl.pretrain.perplexity import heldout_metrics, split_heldout
from bertabl.training import IGNORE_INDEX as IGNORE  # the tokens MLM does not predict
from bertabl.training import (
    Precision,
    TrialRuntime,
    adamw_with_schedule,
    apply_gradients,
    bert_parameter_groups,
    resume_training,
    seed_everything,
    to_device,
    training_checkpoint,
    use_deterministic_algorithms,
)
from bertabl.trial.files import model_dir_name
from bertabl.trial.layout import BatchLayout, batch_layout
from bertabl.trial.pretrain import PretrainConfig, PretrainTrialConfig

LOG_EVERY = 25
WINDOW_KEYS = ("loss", "mlm_loss", "nsp_loss", "nsp_acc")
LABEL_KEYS = ("labels", "next_sentence_label")
HELDOUT_BATCH = 32  # held-out examples per forward pass (masks are per example: any size scores
# the same positions)
PREFETCH = 2  # steps the data thread builds ahead of the training loop


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
    untrained = not OBJECTIVES[config.pretrain.objective].pretrains
    with contextlib.ExitStack() as stack:
        shared = None
        if group.is_main:
            tokenizer = build_tokenizer(
                config.data,
                out_dir / "vocab",
                vocab_size=config.pretrain.vocab_size,
                # streamed, and read only if the vocabulary is not trained yet (the run's data
                # preparation trains it before any trial starts)
                documents=(p.segments for p in iter_pieces(config.data))
                if config.trained_vocabulary
                else None,
                cache_dir=runtime.cache_dir,
            )
            # The run's token store (built by the data preparation step), or one built now;
            # an untrained model reads no corpus.
            store_dir = None
            if not untrained:
                store = trial_store(
                    config.data, tokenizer, runtime.cache_dir, config.pretrain.vocab_size
                )
                store_dir = stack.enter_context(store)
            shared = (tokenizer, store_dir)
        # pickled to the other ranks, which map the same store: only rank 0 writes files
        tokenizer, store_dir = group.broadcast(shared)
        if untrained:
            return _untrained(config, tokenizer, out_dir, runtime, group)
        return _train(config, tokenizer, store_dir, out_dir, runtime, group, layout)


def _untrained(
    config: PretrainTrialConfig,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    runtime: TrialRuntime,
    group: Group,
) -> dict[str, Any]:
    """An objective that does not pre-train ("none"): the model as initialised from the trial's
    seed, saved like a pre-trained one so fine-tuning reads it the same way (the control)."""
    metrics: dict[str, Any] = {"step": 0}
    started = time.perf_counter()
    if group.is_main:
        pt = config.pretrain
        seed_everything(pt.seed)
        objective = OBJECTIVES[pt.objective]
        model = objective.build_model(pt.model, len(tokenizer), tokenizer.pad_token_id)
        _save_model(model, tokenizer, out_dir / model_dir_name())
    runtime.report(metrics | {"seconds": time.perf_counter() - started})  # every rank: a barrier
    return metrics


def _train(
    config: PretrainTrialConfig,
    tokenizer: PreTrainedTokenizerBase,
    store_dir: Path,
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
    store = TokenStore.open(store_dir)
    if store.vocab_size != len(tokenizer):
        raise DataError(
            f"{store_dir}: built with a vocabulary of {store.vocab_size} tokens, the trial's "
            f"tokenizer has {len(tokenizer)}; delete that folder and run again to rebuild it"
        )
    documents, heldout = split_heldout(store.n_documents, pt.heldout_fraction, pt.seed)
    phases = pt.phases()
    objective = OBJECTIVES[pt.objective]
    model = objective.build_model(pt.model, len(tokenizer), tokenizer.pad_token_id).to(device)
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
    masker = Masker(tokenizer, pt.objective, pt.masking, pt.seed)
    with_nsp = objective.nsp

    # (phase of the sequence-length schedule, pass over the corpus, block of the pass, pair
    # within the block): where the next batch starts (pairs.py)
    step, position = 0, (0, 0, 0, 0)
    window: dict[str, list[float]] = {k: [] for k in WINDOW_KEYS}
    history = runtime.history  # the trial record's history: restored entries + new ones
    state = _shared_resume_state(runtime, group)
    if state is None:
        if not group.is_main:  # ranks draw different dropout masks for their slices
            seed_everything(rank_seed(pt.seed, group.rank, 0))
    else:
        # only rank 0's state has the weights; wrapping the model for DDP copies them to the rest
        resume_training(state, group, pt.seed, model, optimizer, scheduler, precision)
        step, position = state["step"], tuple(state["position"])
        window = state["window"]
        history.extend(state["history"])
    # MLM decodes the vocabulary only at masked positions; LTR predicts every one (dense, or in
    # chunks when one micro-batch's logits would be too large).
    net = group.wrap(objective.training_module(model, layout.micro_batch_size * pt.max_seq_len))
    batches: Prefetcher | None = None
    # A finished trial run again for intermediate models it did not keep stops after the last.
    last = max(runtime.save_steps, default=0) if runtime.intermediate_only else pt.steps

    started = time.perf_counter()
    # Throughput since the last report, for live tracking only (never in the history, which a
    # resumed trial must repeat exactly): sequence positions per second, padding included.
    tokens, since = 0, started
    metrics: dict[str, Any] = history[-1] if history else {}
    try:
        while step < last:
            step += 1
            phase = next(i for i, (end, _) in enumerate(phases) if step <= end)
            if phase != position[0]:  # a new sequence length: its own data stream from the start
                position = (phase, 0, 0, 0)
                if batches is not None:
                    batches.close()
                    batches = None
            if batches is None:
                stream = PairStream(
                    store,
                    documents,
                    phases[phase][1],
                    _stream_tag(pt.seed, phase),
                    tokenizer.cls_token_id,
                    tokenizer.sep_token_id,
                )
                steps = rank_steps(
                    stream.cursor(position[1:]),
                    layout,
                    group.rank,
                    masker,
                    pt.objective,
                    (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id),
                )
                batches = Prefetcher(steps, PREFETCH, pin=device.type == "cuda")
            micro_batches, masked, after = next(batches)
            position = (phase, *after)
            mlm_loss, nsp_loss, nsp_acc = _accumulate_gradients(
                net, micro_batches, masked, layout, group, with_nsp, precision
            )
            loss = mlm_loss + nsp_loss
            where = f"pre-training step {step}"
            apply_gradients(loss, model, optimizer, scheduler, where, precision)

            tokens += pt.batch_size * phases[phase][1]
            window["loss"].append(loss)
            window["mlm_loss"].append(mlm_loss)
            if with_nsp:
                window["nsp_loss"].append(nsp_loss)
                window["nsp_acc"].append(nsp_acc)
            if step % LOG_EVERY == 0 or step == pt.steps:
                metrics = {k: sum(v) / len(v) for k, v in window.items() if v}
                metrics["mlm_perplexity"] = math.exp(min(metrics["mlm_loss"], 50.0))
                metrics = objective.logged(metrics)  # e.g. ltr_loss: named for what they are
                metrics |= {"step": step, "lr": scheduler.get_last_lr()[0]}
                history.append(metrics)
                window = {k: [] for k in WINDOW_KEYS}
                if step < pt.steps:  # every rank: under Ray Train a report is a barrier
                    now = time.perf_counter()
                    rate = tokens / max(now - since, 1e-9)
                    runtime.report(metrics | {"seconds": now - started, "tokens_per_s": rate})
                    tokens, since = 0, now
            if step in runtime.save_steps and step < pt.steps and group.is_main:
                _save_model(model, tokenizer, out_dir / model_dir_name(step))
            if runtime.due(step) and step < pt.steps:
                parts = training_checkpoint(group, model, optimizer, scheduler, precision)
                if parts is not None:  # rank 0
                    runtime.save(
                        step,
                        {
                            **parts,
                            "step": step,
                            "position": position,
                            "window": window,
                            "history": history,
                        },
                    )
    finally:
        if batches is not None:
            batches.close()

    if runtime.intermediate_only:
        return metrics  # the final model (which fine-tunes read) and the record stay as they were
    if group.is_main:
        if len(heldout):
            metrics = {
                **metrics,
                **_heldout(model, store, heldout, tokenizer, pt, device, precision),
            }
        _save_model(model, tokenizer, out_dir / model_dir_name())
    runtime.report(metrics | {"seconds": time.perf_counter() - started})  # every rank, as above
    return metrics


def _heldout(
    model: torch.nn.Module,
    store: TokenStore,
    documents: np.ndarray,
    tokenizer: PreTrainedTokenizerBase,
    pt: PretrainConfig,
    device: torch.device,
    precision: Precision,
) -> dict[str, float]:
    """Held-out metrics of the final model, at max_seq_len, on the first `heldout_examples`
    pairs of one pass over the held-out documents. Pairs and masks come from their own seeds
    (not the training RNGs), so models that share a corpus and masking config (Table 6's sizes,
    Table 5's MLM rows) are scored on the same positions of the same inputs."""
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    stream = PairStream(store, documents, pt.max_seq_len, f"{pt.seed}/heldout", *ids[:2])
    rows, keys = stream.cursor().take(pt.heldout_examples, one_pass=True)
    masker = Masker(tokenizer, pt.objective, pt.masking, pt.seed + 1)
    batches = [
        collate(
            store.tokens,
            rows[i : i + HELDOUT_BATCH],
            keys[i : i + HELDOUT_BATCH],
            ids,
            masker,
            pt.objective,
        )
        for i in range(0, len(rows), HELDOUT_BATCH)
    ]
    return heldout_metrics(model, batches, pt.objective, device, precision.autocast)


def _save_model(model, tokenizer, directory: Path) -> None:
    # Written beside, then renamed: a kill mid-save never leaves a half model under the name.
    partial = directory.with_name(directory.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if directory.exists():
        shutil.rmtree(directory)
    partial.rename(directory)


def _accumulate_gradients(
    net: torch.nn.Module,
    micro_batches: list[dict[str, torch.Tensor]],
    masked: int,
    layout: BatchLayout,
    group: Group,
    with_nsp: bool,
    precision: Precision,
) -> tuple[float, float, float]:
    """Forward and backward over this rank's `micro_batches` (holding `masked` MLM targets) of
    one global batch, leaving the global batch's gradient in the parameters; returns its
    (mlm_loss, nsp_loss, nsp_acc).

    Loss scaling. The full-batch MLM loss is the mean over all masked tokens of the global
    batch, so a micro-batch contributes the sum of its masked-token losses divided by the
    global batch's masked-token count (summed over ranks: each rank built only its own rows):
    HF's per-micro-batch mean weighted by the micro-batch's share of the masked tokens, not by
    its share of sequences (micro-batches hold different numbers of masked tokens). NSP is a
    mean over sequences: sum / global batch size. The contributions of all micro-batches of all
    ranks then add up to the full-batch loss. The losses are computed here from the logits (not
    taken from HF's `loss`) to get both parts as tensors and no NaN for a micro-batch without
    masked tokens. Backward runs on `world` times the contribution, as DDP averages gradients
    over ranks rather than summing them.
    """
    device = group.device
    masked_tokens: float | torch.Tensor = max(1, masked)
    if group.world > 1:  # a tensor on the device: dividing by it needs no host sync
        masked_tokens = group.sum(torch.tensor(float(masked), device=device)).clamp_min(1)
    sparse = isinstance(_unwrapped(net), MaskedPositionsLM)
    chunked = isinstance(_unwrapped(net), ChunkedLeftToRightLM)
    totals = torch.zeros(3, device=device)  # mlm_loss, nsp_loss, nsp_acc of the global batch
    for index, micro in enumerate(micro_batches):
        if chunked:  # found on the CPU, before the copy: no device->host sync
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


def _stream_tag(seed: int, phase: int) -> str:
    """The pair stream of one phase of the sequence-length schedule (its own pairs and masks)."""
    return f"{seed}/phase/{phase}"
