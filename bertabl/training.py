"""Shared by the pre-training and fine-tuning loops: seeding, device, precision, optimizer."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup


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


def autocast(device: torch.device):
    """bf16 autocast on GPUs that support it; full fp32 on CPU (autocast there is slower)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adamw_with_schedule(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    total_steps: int,
    warmup_fraction: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without decay on biases and LayerNorm weights (as BERT), linear warmup then decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)
    warmup = int(round(warmup_fraction * total_steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return optimizer, scheduler


def optimizer_step(
    loss: torch.Tensor,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    where: str,
    max_grad_norm: float = 1.0,
) -> None:
    """Backward, clip (BERT clips at 1.0), step, schedule; a non-finite loss fails the trial."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at {where}")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
