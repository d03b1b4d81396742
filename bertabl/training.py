"""Shared by the pre-training and fine-tuning loops: seeding, device, precision, optimizer."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from bertabl.errors import UserError
from bertabl.parallel import Group, rank_seed

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
    deterministic: bool = False  # see use_deterministic_algorithms
    # Pre-training that finished before and runs again only to save intermediate models it did
    # not keep (`save_steps` are then the missing ones): it stops after the last of them and
    # leaves the final model, which other trials read, as it is.
    intermediate_only: bool = False
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
    """The GPU Ray assigned to this trial when it asked for one, else the CPU.

    A trial that holds a GPU but whose torch cannot use CUDA fails here, with the reason,
    instead of training on the CPU for hours unnoticed.
    """
    if gpus <= 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = torch.version.cuda
        why = (
            f"this torch ({torch.__version__}) is a CPU-only build"
            if build is None
            else f"this torch ({torch.__version__}, CUDA {build}) finds no usable GPU: no "
            "NVIDIA driver, one older than CUDA " + build + " needs, or no GPU visible to the "
            "trial (CUDA_VISIBLE_DEVICES)"
        )
        raise UserError(
            f"resources.gpus_per_trial = {gpus:g} but {why}; install a CUDA build of torch "
            "that matches the driver, or set resources.gpus_per_trial = 0 to train on CPU"
        )
    return torch.device("cuda")  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU(s)


# pack_padded_sequence needs sequence lengths on the host: batch entries under these keys stay
# there (copied to the GPU and back, they would cost a device->host sync every forward pass).
HOST_KEYS = frozenset({"lengths"})


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch on `device`, except its HOST_KEYS. To a GPU the tensors go through pinned (page-
    locked) memory, the one case in which `non_blocking` copies overlap with compute; a copy
    from pageable memory would block anyway."""
    if device.type != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    return {
        k: v if k in HOST_KEYS else v.pin_memory().to(device, non_blocking=True)
        for k, v in batch.items()
    }


# cuBLAS needs a fixed workspace to be deterministic; the value torch's error message names.
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")


def use_deterministic_algorithms(deterministic: bool) -> None:
    """`resources.deterministic`: deterministic kernels only (torch raises where an op has none),
    a fixed cuBLAS workspace, cuDNN without autotuning, and NCCL's ring algorithm for
    all-reduce, so that a run (and its resume) repeats to the bit on the same GPU model,
    software and worker count. Other GPU models or worker counts still give other numbers.

    Called by the trial bodies before they touch the GPU, in every data-parallel process (the
    environment variables are read when cuBLAS and NCCL start, and are inherited by the ranks a
    trial spawns). Off by default: the default algorithms are faster, and CPU runs are bit-exact
    either way.
    """
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False  # autotuning may pick another kernel each run
    if deterministic:
        if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in CUBLAS_DETERMINISTIC:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC[0]
        # NCCL picks ring or tree per message size and topology; the order of a sum decides its
        # last bits, so it is pinned to one algorithm.
        os.environ.setdefault("NCCL_ALGO", "Ring")


def share_gpu(device: torch.device, gpus: float) -> None:
    """Trials holding a fraction of a GPU each get that fraction of its memory at most, so one
    trial's growth cannot take the memory of the trials it shares the GPU with."""
    if device.type == "cuda" and 0 < gpus < 1:
        torch.cuda.set_per_process_memory_fraction(gpus, device)


def release_gpu_memory(device: torch.device) -> None:
    """Hand the memory a finished trial's tensors cached back to the driver: one worker process
    runs trial after trial (Tune reuses actors), and its cache would otherwise stay reserved
    away from the other processes on the GPU."""
    if device.type == "cuda":
        gc.collect()  # the trial's model and optimizer, if a reference cycle still holds them
        torch.cuda.empty_cache()


@dataclass
class Precision:
    """Mixed precision for one trial: autocast dtype and, for fp16, a gradient scaler.

    "auto" = bf16 autocast on GPUs that support it natively (Ampere and later), fp16 autocast
    with a loss scaler on older GPUs, fp32 on CPU (CPU autocast is slower than fp32 for these
    models). The scaler's state is part of every checkpoint, so a resumed fp16 run continues
    with the same loss scale. On a GPU, fp32 matmuls (all of them in "fp32", those outside
    autocast otherwise) run on TF32 tensor cores: a 10-bit mantissa for the products, fp32
    accumulation, as in most mixed-precision training.
    """

    device: torch.device
    dtype: torch.dtype | None = None  # None = fp32, no autocast
    scaler: Any = None  # torch.amp.GradScaler for fp16

    @classmethod
    def for_device(cls, device: torch.device, mode: str = "auto") -> Precision:
        if device.type == "cuda":
            # The legacy flag: it leaves CPU (mkldnn) matmuls alone, unlike
            # torch.set_float32_matmul_precision.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if mode == "auto":
            if device.type != "cuda":
                mode = "fp32"
            else:
                # Emulated bf16 (pre-Ampere GPUs) is slower than fp16 with a scaler.
                native = torch.cuda.is_bf16_supported(including_emulation=False)
                mode = "bf16" if native else "fp16"
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


def training_checkpoint(
    group: Group,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: Precision,
) -> dict[str, Any] | None:
    """The checkpoint parts every loop has: `training_state` and every rank's RNG state ("rng":
    rank 0's, "worker_rng": ranks 1..k-1's; dropout differs per rank). Every rank calls it
    (gathering the RNG states takes them all); rank 0, which writes, gets the parts, the rest
    None."""
    rngs = group.gather(rng_state(precision.device))
    if not group.is_main:
        return None
    return {
        **training_state(model, optimizer, scheduler, precision),
        "rng": rngs[0],
        "worker_rng": rngs[1:],
    }


def resume_training(
    state: dict[str, Any],
    group: Group,
    seed: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: Precision,
) -> None:
    """Load what `training_checkpoint` saved, with this rank's own RNG state."""
    restore_training_state(state, model, optimizer, scheduler, precision)
    restore_rank_rng(state, group, seed)


def restore_rank_rng(state: dict[str, Any], group: Group, seed: int) -> None:
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


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every RNG a training step draws from: python, numpy, torch CPU and, when `device` is a
    GPU, that GPU's. Only the process's own device: a state per visible GPU could not be put
    back on a host (or in a trial) that sees fewer."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what `rng_state` captured; its GPU state goes to `device`, whichever GPU index
    that is now (a CPU checkpoint resumed on a GPU keeps the GPU generator as seeded)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
