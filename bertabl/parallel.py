"""One process's view of a data-parallel trial: its rank, its device, the collectives it uses.

A trial with k > 1 workers runs as k Ray Train workers (bertabl/orchestrate/train_workers.py):
Ray Train places them (across nodes when it must), sets up the torch process group (NCCL on
GPUs, gloo on CPU), gives each worker its device and restarts the group from the trial's last
checkpoint when a worker fails. The training loops only see a `Group`: every rank runs the same
loop on its own slice of every global batch, rank 0 alone reports files, checkpoints and saves
the model. A single-worker trial has a `Group` of world 1 and no process group at all.
"""

from __future__ import annotations

import contextlib
import inspect
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Group:
    """This process's rank in the trial's data-parallel group (world 1: no process group)."""

    rank: int
    world: int
    device: torch.device
    backend: str | None = None

    @classmethod
    def single(cls, device: torch.device) -> Group:
        return cls(0, 1, device)

    @classmethod
    def current(cls, device: torch.device) -> Group:
        """The group of the torch process group this process has joined (Ray Train set it up);
        world 1 when there is none."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls.single(device)
        return cls(dist.get_rank(), dist.get_world_size(), device, dist.get_backend())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to run forward/backward through: DDP over the group, or `model` itself.

        Wrapping copies rank 0's parameters to every rank. BERT's buffers (position and token
        type ids) are constants, so they are not re-broadcast on every forward (why this is
        not Ray Train's `prepare_model`, whose DDP re-broadcasts buffers before each forward).
        """
        if self.world == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, **_NO_BUFFER_SYNC)

    def accumulating(self, net: torch.nn.Module, skip_sync: bool):
        """Context for one micro-batch's forward+backward; `skip_sync` keeps its gradients local
        (all micro-batches but the last: DDP then all-reduces the accumulated sum once)."""
        if skip_sync and isinstance(net, DistributedDataParallel):
            return net.no_sync()
        return contextlib.nullcontext()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over ranks (in place); every rank gets the same result."""
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients of `parameters` over ranks, in one all-reduce of a flat buffer.

        Written out for the fine-tuning loop, which cannot use DDP: its recipe changes which
        parameters train from epoch to epoch (gradual unfreezing) and a multi-task step trains
        one head, while DDP's reducer fixes its parameters when it wraps the model. A parameter
        no rank has a gradient for keeps `grad = None` (AdamW then skips it, as in one process);
        one that some rank has no gradient for (its share of a short last batch was empty)
        counts zeros there.
        """
        if self.world == 1:
            return
        params = [p for p in parameters if p.requires_grad]
        if not params:
            return
        pieces = [
            p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params
        ]
        has_grad = torch.tensor([p.grad is not None for p in params], dtype=pieces[0].dtype)
        flat = torch.cat([*pieces, has_grad.to(pieces[0].device)])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        trained = flat[-len(params) :].tolist()  # one device->host copy, not one per parameter
        offset = 0
        for param, ranks_with_grad in zip(params, trained, strict=True):
            summed = flat[offset : offset + param.numel()].view_as(param)
            offset += param.numel()
            if ranks_with_grad == 0:
                continue  # no rank trained it this step
            if param.grad is None:
                param.grad = summed.clone()
            else:
                param.grad.copy_(summed)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (pickled; for start-up state, not per-step data)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._object_device)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    @property
    def _object_device(self) -> torch.device | None:
        return self.device if self.backend == "nccl" else None


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of rank `rank` > 0 when it starts (or resumes without its own RNG state) at
    `step`: ranks draw different dropout masks for their slices of a batch."""
    return random.Random(f"{seed}/rank/{rank}/step/{step}").getrandbits(63)


# Called `broadcast_buffers` before torch 2.13 (which still takes it, with a warning).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)
