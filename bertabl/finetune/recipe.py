"""What one optimizer step of a fine-tuning trial does, beyond forward and backward: the recipe
(`finetune.recipe`; `Recipe` in trial/finetune.py) applied to a model and its optimizer, a
data-parallel rank's share of the step, and the state a resume needs.

`Tuning` owns all of it, so the loop itself (epoch_loop.py) stays a plain "for each batch: step"
loop:

- parameter groups: layer-wise learning-rate decay (encoder layer i of L, counted from 1, at
  lr * decay^(L+1-i), embeddings at decay^(L+1), the pooler at lr), the new head at
  lr * head_lr_scale, and no weight decay on biases/LayerNorm weights unless
  decay_exclusion = false; then AdamW with BERT's linear warmup and decay;
- freezing: the embeddings and/or the bottom k layers get no gradients (requires_grad = False,
  so AdamW skips them, weight decay included); gradual unfreezing thaws the top-most frozen
  layer every `unfreeze_every` epochs, the embeddings last;
- gradient accumulation: a batch is split into `grad_accumulation` micro-batches, each part's
  mean loss weighted by its share of what the batch's loss averages over (examples, or
  labelled tokens for tagging), so the summed gradient is the whole batch's;
- EMA: torch's AveragedModel keeps an exponential moving average of the weights, updated after
  every optimizer step; evaluation swaps the averaged weights in;
- data-parallel trials: each rank steps on its share of every batch, weighted against the whole
  batch's count, and the ranks' gradients are summed before the optimizer steps
  (`Group.sum_gradients`, bertabl/parallel.py: freezing and multi-task heads change which
  parameters train, which DDP cannot follow); every rank starts from rank 0's state;
- checkpoints: weights, optimizer, schedule, EMA, every rank's RNG state and the loop's
  position, so a resumed trial continues as if uninterrupted (a checkpoint that does not fit
  the model, e.g. from another bertabl version, starts the trial over, with a warning).

Parameters are told apart by name: everything under the encoder's module (transformers'
`base_model_prefix`: `bert.`, `roberta.`, `electra.`, `distilbert.`, `albert.`, `deberta.`;
under `heads.<task>.` in a multi-task model) is the pre-trained encoder, with DistilBERT's
`transformer.layer.i` read as BERT's `encoder.layer.i`; anything else is the new head.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bertabl.parallel import Group, rank_seed
from bertabl.training import (
    IGNORE_INDEX,
    Precision,
    adamw_with_schedule,
    apply_gradients,
    check_finite,
    resume_training,
    seed_everything,
    to_device,
    training_checkpoint,
)
from bertabl.trial.finetune import FinetuneTrialConfig, MultitaskTrialConfig, Recipe

# The encoder's module name in transformers' task models of the BERT family (base_model_prefix).
_ENCODER = re.compile(r"(?:^|\.)(?:bert|roberta|electra|distilbert|albert|deberta)\.")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")


def encoder_name(name: str) -> str | None:
    """`name` inside the pre-trained encoder ("encoder.layer.0.output.dense.weight"), or None
    for a parameter of a new head. DistilBERT's `transformer.layer.i` is read as BERT's
    `encoder.layer.i`, so layer-wise settings mean the same on every encoder."""
    match = _ENCODER.search(name)
    if not match:
        return None
    inner = name[match.end() :]
    if inner.startswith("transformer."):
        return "encoder." + inner.removeprefix("transformer.")
    return inner


def depth(name: str, layers: int) -> int | None:
    """0 = embeddings, i+1 = encoder layer i, layers+1 = the pooler; None = the new head."""
    inner = encoder_name(name)
    if inner is None:
        return None
    if inner.startswith("embeddings."):
        return 0
    match = _LAYER.match(inner)
    return int(match.group(1)) + 1 if match else layers + 1


def lr_scale(name: str, layers: int, recipe: Recipe) -> float:
    """The multiple of the grid's learning rate that parameter `name` trains at."""
    d = depth(name, layers)
    if d is None:
        return recipe.head_lr_scale
    return recipe.layer_decay ** (layers + 1 - d)


def parameter_groups(
    model: torch.nn.Module, recipe: Recipe, learning_rate: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW parameter groups, one per (learning rate, weight decay), in first-seen order.

    With BERT's recipe this is BERT's two groups: decayed, and biases/LayerNorm undecayed.
    """
    layers = _layers(model)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:  # frozen by the model itself, not by the recipe
            continue
        lr = learning_rate * lr_scale(name, layers, recipe)
        exempt = recipe.decay_exclusion and (param.ndim < 2 or "LayerNorm" in name)
        decay = 0.0 if exempt else weight_decay
        group = groups.setdefault((lr, decay), {"params": [], "lr": lr, "weight_decay": decay})
        group["params"].append(param)
    return list(groups.values())


def frozen_prefixes(recipe: Recipe, epoch: int) -> list[str]:
    """Encoder name prefixes (see encoder_name) of the parts frozen during `epoch` (1-based)."""
    frozen = [f"encoder.layer.{i}." for i in reversed(range(recipe.freeze_layers))]
    if recipe.freeze_embeddings:
        frozen.append("embeddings.")  # thawed last: the most general features
    thawed = (epoch - 1) // recipe.unfreeze_every if recipe.unfreeze_every else 0
    return frozen[thawed:]


class Tuning:
    """Optimizer, schedule, freezing, accumulation and EMA for one fine-tuning trial."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: FinetuneTrialConfig | MultitaskTrialConfig,  # or anything with these settings
        total_steps: int,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        group: Group | None = None,
    ):
        self.model = model
        self.seed = getattr(config, "seed", 0)  # seeds ranks > 0 (data-parallel trials)
        # A data-parallel trial's rank (bertabl/parallel.py): each rank trains on its share of
        # every batch, their gradients are summed before each step, rank 0 checkpoints.
        self.group = group or Group.single(next(model.parameters()).device)
        self.recipe = config.recipe
        groups = parameter_groups(model, self.recipe, config.learning_rate, config.weight_decay)
        self.optimizer, self.scheduler = adamw_with_schedule(
            groups, config.learning_rate, total_steps, config.warmup_fraction, betas, eps
        )
        self.ema = None
        if self.recipe.ema_decay:
            multi_avg_fn = get_ema_multi_avg_fn(self.recipe.ema_decay)
            self.ema = AveragedModel(model, multi_avg_fn=multi_avg_fn)

    def start_epoch(self, epoch: int) -> None:
        """Freeze what the recipe keeps frozen in `epoch`; thaw the rest (also on resume)."""
        frozen = tuple(frozen_prefixes(self.recipe, epoch))
        for name, param in self.model.named_parameters():
            inner = encoder_name(name)
            if inner is not None:
                param.requires_grad_(not (frozen and inner.startswith(frozen)))

    def step(
        self,
        items: list,
        collate,
        precision: Precision,
        where: str,
        forward: torch.nn.Module | None = None,
    ) -> float:
        """One optimizer step on the batch `items`; returns the batch's loss. `forward` is the
        module that computes the loss when it is a part of the model (a multi-task head)."""
        group = self.group
        mine = _split(items, group.world)[group.rank] if group.world > 1 else items
        total = accumulate_gradients(
            forward or self.model,
            mine,
            collate,
            self.recipe.grad_accumulation,
            precision,
            where,
            group,
        )
        group.sum_gradients(self.model.parameters())  # every rank: the whole batch's gradient
        apply_gradients(total, self.model, self.optimizer, self.scheduler, where, precision)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return total

    @contextlib.contextmanager
    def evaluation_weights(self):
        """Inside: the model holds the EMA weights (when the recipe keeps an average)."""
        if self.ema is None:
            yield
            return
        params = list(self.model.parameters())
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, averaged in zip(params, self.ema.module.parameters(), strict=True):
                p.copy_(averaged)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, original in zip(params, saved, strict=True):
                    p.copy_(original)

    def resume(self, runtime, precision: Precision, losses: Any) -> tuple[int, int, int, Any]:
        """(epoch, batch, step, losses) to go on from: the latest checkpoint's (its weights,
        optimizer, schedule, EMA, RNGs and history restored), else the start with `losses`."""
        group = self.group
        state = runtime.resume_state() if group.is_main else None
        if state is not None and (mismatch := _shape_mismatch(state["model"], self.model)):
            # e.g. a checkpoint written before fine-tuning compacted the word embeddings: a
            # trial's result does not depend on where it resumed, so it starts over.
            warnings.warn(
                f"the checkpoint of step {state['step']} does not fit this model ({mismatch}; "
                "written by another bertabl version?): the trial starts over",
                RuntimeWarning,
                stacklevel=2,
            )
            runtime.resumed_from, state = None, None
        # Rank 0's state, weights included, on every rank (no DDP here to copy the weights).
        state = group.broadcast(state)
        if state is None:
            if not group.is_main:  # ranks draw different dropout masks for their shares
                seed_everything(rank_seed(self.seed, group.rank, 0))
            return 1, 0, 0, losses
        resume_training(
            state, group, self.seed, self.model, self.optimizer, self.scheduler, precision
        )
        self.load_state_dict(state.get("tuning", {}))
        runtime.history.extend(state["history"])
        return state["epoch"], state["batch"], state["step"], state["losses"]

    def checkpoint(
        self, runtime, precision: Precision, epoch: int, batch: int, step: int, losses: Any
    ) -> None:
        """Save everything `resume` needs to continue exactly after optimizer step `step`."""
        parts = training_checkpoint(
            self.group, self.model, self.optimizer, self.scheduler, precision
        )
        if parts is None:  # not rank 0
            return
        runtime.save(
            step,
            {
                **parts,
                "tuning": self.state_dict(),
                "epoch": epoch,
                "batch": batch,
                "step": step,
                "losses": losses,
                "history": runtime.history,
            },
        )

    def state_dict(self) -> dict[str, Any]:
        """The EMA's state (the optimizer and schedule are saved by training_state)."""
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def accumulate_gradients(
    model: torch.nn.Module,
    items: list,
    collate,
    micro_batches: int,
    precision: Precision,
    where: str,
    group: Group | None = None,
) -> float:
    """Backward over `items` in `micro_batches` parts; the gradients (and the returned loss)
    are the whole batch's: each part's mean loss is weighted by its share of what the loss
    averages over (examples, or labelled tokens for tagging).

    The step's one device->host sync reads the parts' losses after the last backward, so the
    GPU is never left waiting for the host between forward and backward; the weights come from
    the batches on the host, before they are copied. In a data-parallel trial `items` is this
    rank's share of the batch: the shares are weighted against the whole batch's count (summed
    over ranks), so the ranks' gradients add up to the batch's (`Group.sum_gradients`), and the
    returned loss is the whole batch's."""
    group = group or Group.single(precision.device)
    batches = [collate(part) for part in _split(items, micro_batches) if part]
    counts = [_loss_terms(b) for b in batches]  # on the host: no sync
    total_count = sum(counts)
    shared = len(batches) > 1 or group.world > 1  # one part of one rank: BERT's plain step
    if group.world > 1:  # on the rank's device: NCCL reduces GPU tensors only
        count_sum = group.sum(torch.tensor([float(total_count)], device=group.device))
        total_count = int(count_sum.item())
    losses = []
    for batch, count in zip(batches, counts, strict=True):
        with precision.autocast():
            loss = model(**to_device(batch, precision.device)).loss
        weight = count / total_count if shared else 1.0
        precision.backward(loss * weight if shared else loss)
        losses.append(loss.detach())
    values = torch.stack(losses).tolist() if losses else []  # a rank whose share is empty
    total = 0.0
    for value, count in zip(values, counts, strict=True):
        check_finite(value, where)
        total += value * (count / total_count if shared else 1.0)
    if group.world > 1:
        total = group.sum(torch.tensor([total], dtype=torch.float64, device=group.device)).item()
    return total


def _split(items: list, parts: int) -> list[list]:
    """`items` in `parts` consecutive chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        chunks.append(items[start:end])
        start = end
    return chunks


def _loss_terms(batch: dict[str, torch.Tensor]) -> int:
    """How many terms the batch's mean loss averages: labelled tokens, or examples."""
    labels = batch.get("labels")
    if labels is not None and labels.dim() > 1:
        return int((labels != IGNORE_INDEX).sum())
    return len(next(iter(batch.values())))


def _shape_mismatch(saved: dict[str, torch.Tensor], model: torch.nn.Module) -> str | None:
    """The first parameter or buffer whose saved shape differs from the model's, said as
    "name: saved shape vs model shape" (or a missing/unexpected name); None when all fit."""
    current = model.state_dict()
    for name in sorted(set(saved) | set(current)):
        if name not in current or name not in saved:
            return f"{name}: {'not in the model' if name not in current else 'not saved'}"
        if tuple(saved[name].shape) != tuple(current[name].shape):
            return f"{name}: {tuple(saved[name].shape)} saved vs {tuple(current[name].shape)}"
    return None


def _layers(model: torch.nn.Module) -> int:
    config = getattr(model, "config", None)
    return getattr(config, "num_hidden_layers", 0)
