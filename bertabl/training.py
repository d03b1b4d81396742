"""Shared by the pre-training and fine-tuning loops: seeding, device, precision, optimizer."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from bertabl.errors import UserError

IGNORE_INDEX = -100  # the label no loss counts (torch's cross-entropy default ignore_index)

# Receives a body's metrics as it goes (Tune's live results). Resuming goes through
# `checkpoints`, and the saved model through the run directory, so no artefact rides along.
Reporter = Callable[[dict[str, Any]], None]


class CheckpointStore(Protocol):
    """Where a trial body saves and finds its training state (see orchestrate/checkpoint.py)."""

    def save(self, step: int, state: dict[str, Any]) -> Any: ...
    def load_latest(self) -> dict[str, Any] | None: ...


@dataclass
class TrialRuntime:
    """What a trial body gets from whoever runs it (a Tune trainable, a test, a benchmark)."""

    device: torch.device
    report: Reporter = lambda metrics: None
    checkpoints: CheckpointStore | None = None
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = only at epoch ends
    precision: str = "auto"  # see Precision.for_device
    save_steps: tuple[int, ...] = ()  # pre-training: also save the model after these steps
    workers: int = 1  # data-parallel processes (pre-training)
    micro_batch_size: int = 0  # sequences per process per forward pass; 0 = batch / workers
    resumed_from: int | None = None  # the step a resumed run continued from
    # Where data shared by a run's trials is cached (tokenised corpus, trained vocabulary);
    # None = no cache (tests, benchmarks).
    cache_dir: Path | None = None
    # The body's metric history (one entry per log/epoch), restored on resume: the trial record's
    # history comes from here, so a resumed trial's record equals an uninterrupted one's.
    history: list[dict[str, Any]] = field(default_factory=list)

    def resume_state(self) -> dict[str, Any] | None:
        state = self.checkpoints.load_latest() if self.checkpoints else None
        if state is not None:
            self.resumed_from = state["step"]
        return state

    def save(self, step: int, state: dict[str, Any]) -> None:
        if self.checkpoints is not None:
            self.checkpoints.save(step, state)

    def due(self, step: int) -> bool:
        """True when a checkpoint is due after optimizer step `step`."""
        return self.checkpoint_every > 0 and step % self.checkpoint_every == 0


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(gpus: float) -> torch.device:
    """The GPU Ray assigned to this trial when it asked for one, else the CPU."""
    if gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda")  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU(s)
    return torch.device("cpu")


@dataclass
class Precision:
    """Mixed precision for one trial: autocast dtype and, for fp16, a gradient scaler.

    "auto" = bf16 autocast on GPUs that support it, fp16 autocast with a loss scaler on older
    GPUs, fp32 on CPU (CPU autocast is slower than fp32 for these models). The scaler's state is
    part of every checkpoint, so a resumed fp16 run continues with the same loss scale.
    """

    device: torch.device
    dtype: torch.dtype | None = None  # None = fp32, no autocast
    scaler: Any = None  # torch.amp.GradScaler for fp16

    @classmethod
    def for_device(cls, device: torch.device, mode: str = "auto") -> Precision:
        if mode == "auto":
            if device.type != "cuda":
                mode = "fp32"
            else:
                mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if mode == "fp32":
            return cls(device)
        if mode == "bf16":
            return cls(device, torch.bfloat16)
        if device.type != "cuda":
            raise UserError(
                "resources.precision = 'fp16' needs a GPU; use 'auto', 'fp32' or 'bf16' on CPU"
            )
        return cls(device, torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def fusable(groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused AdamW takes these parameter groups: one kernel for all parameters
    instead of ~7 per tensor (a quarter of a small model's step time on CPU in the for-loop
    form); the same update up to float rounding."""
    return all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])


def bert_parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """BERT's two AdamW groups: decayed weights, and biases/LayerNorm weights without decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def adamw_with_schedule(
    groups: list[dict[str, Any]],
    learning_rate: float,
    total_steps: int,
    warmup_fraction: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over parameter `groups` (fused where torch takes them) with BERT's schedule: linear
    warmup over `warmup_fraction` of the steps, then linear decay to 0."""
    optimizer = torch.optim.AdamW(
        groups, lr=learning_rate, betas=betas, eps=eps, fused=fusable(groups)
    )
    warmup = int(round(warmup_fraction * total_steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return optimizer, scheduler


def apply_gradients(
    loss: float,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    where: str,
    precision: Precision,
    max_grad_norm: float = 1.0,
) -> None:
    """The step after backward (done per micro-batch when gradients accumulate)."""
    check_finite(loss, where)
    scaler = precision.scaler
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def check_finite(loss: float, where: str) -> None:
    """A NaN/inf loss fails the trial with the place it happened (the other trials go on)."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss became {loss} at {where}")


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: Precision,
) -> dict[str, Any]:
    """The checkpoint parts every loop has: weights, optimizer, schedule, loss scaler."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": precision.state_dict(),
    }


def restore_training_state(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: Precision,
) -> None:
    """Load what `training_state` saved (without "model": DDP copies rank 0's weights)."""
    if "model" in state:
        model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    precision.load_state_dict(state.get("scaler", {}))


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from: python, numpy, torch CPU and all CUDA devices."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
