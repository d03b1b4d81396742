"""Data parallelism inside one pre-training trial: batch layout, ranks, the process group.

A trial with `resources.workers_per_trial = k > 1` runs k processes. The trial's own process is
rank 0: it alone reports to Tune, writes checkpoints and saves the model (Tune's `report` only
works in the trial process). It starts ranks 1..k-1 itself with `torch.multiprocessing` (spawn);
they meet at a `TCPStore` that rank 0 serves on 127.0.0.1 at a free port (the role
MASTER_ADDR/MASTER_PORT play for `torchrun`), then join a process group: NCCL when every rank has
its own GPU (rank r uses cuda:r of the GPUs Ray made visible), gloo otherwise (CPU, or GPUs shared
between ranks). Every rank runs the same training loop on its own slice of every global batch and
`DistributedDataParallel` averages the gradients.

Failure handling: a rank that fails sends its traceback to rank 0 and exits; rank 0's next
collective then fails (gloo notices the closed connection at once; for NCCL a watcher thread aborts
the communicator) and rank 0 raises `WorkerFailed` naming the rank and its error. Collectives
time out after `TIMEOUT`, so a rank that hangs fails the trial rather than blocking it forever.
Ranks 1..k-1 exit when rank 0 dies (they watch their parent).
"""

from __future__ import annotations

import contextlib
import inspect
import multiprocessing.connection
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

HOST = "127.0.0.1"
TIMEOUT = timedelta(minutes=10)  # longest wait in one collective (rank 0 checkpointing included)
GRACE_S = 5.0  # how long rank 0, on a failed collective, waits to hear which rank failed
MAX_TRACEBACK = 8000


class WorkerFailed(RuntimeError):
    """A data-parallel rank other than 0 failed or died, so the trial cannot go on."""


# ---------------------------------------------------------------------------------------------
# One process's view of the group


@dataclass(frozen=True)
class Group:
    """This process's rank in the trial's data-parallel group (world 1: no process group)."""

    rank: int
    world: int
    device: torch.device
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to run forward/backward through: DDP over the group, or `model` itself.

        Wrapping copies rank 0's parameters to every rank. BERT's buffers (position and token
        type ids) are constants, so they are not re-broadcast on every forward.
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


# Called `broadcast_buffers` before torch 2.13 (which still takes it, with a warning).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def rank_device(device: torch.device, rank: int, world: int) -> torch.device:
    """Where rank `rank` computes: the CPU, or GPU number `rank` (modulo the GPUs visible)."""
    if device.type != "cuda" or world == 1:
        return device
    return torch.device("cuda", rank % torch.cuda.device_count())


def pick_backend(device: torch.device, world: int) -> str:
    """NCCL when each rank has a GPU of its own; gloo on CPU and for ranks sharing a GPU."""
    if device.type == "cuda" and dist.is_nccl_available():
        if torch.cuda.device_count() >= world:
            return "nccl"
    return "gloo"


# ---------------------------------------------------------------------------------------------
# Launching ranks 1..k-1 from rank 0


@contextlib.contextmanager
def launch(
    workers: int,
    device: torch.device,
    entry: Callable[..., Any],
    args: tuple = (),
    timeout: timedelta = TIMEOUT,
) -> Iterator[Group]:
    """Run the body of the `with` as rank 0 of `workers` processes; the others run
    `entry(group, *args)` (a module-level function: it is pickled by name).

    On leaving, the others are joined and the process group destroyed; a failed or dead rank
    makes rank 0 raise `WorkerFailed` (also when rank 0's own body finished).
    """
    if workers == 1:
        yield Group(0, 1, device)
        return

    backend = pick_backend(device, workers)
    store = dist.TCPStore(HOST, 0, workers, is_master=True, timeout=timeout, wait_for_workers=False)
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    children: list = []
    watcher = _Watcher(children, backend)
    try:
        for rank in range(1, workers):
            child = ctx.Process(
                target=_child_main,
                args=(rank, workers, store.port, rank_device(device, rank, workers), backend),
                kwargs={
                    "timeout": timeout,
                    "errors": errors,
                    "entry": entry,
                    "args": args,
                    "threads": torch.get_num_threads(),
                },
                name=f"bertabl-dp-rank{rank}",
                daemon=True,
            )
            child.dp_rank = rank
            child.start()
            children.append(child)
        watcher.start()
        _wait_until_ready(store, children, errors, timeout)
        main_device = rank_device(device, 0, workers)
        if main_device.type == "cuda":
            torch.cuda.set_device(main_device)
        dist.init_process_group(backend, store=store, rank=0, world_size=workers, timeout=timeout)
        try:
            yield Group(0, workers, main_device, backend)
        except RuntimeError as error:  # a failed collective: is a dead rank the cause?
            failure = _failure(children, errors, wait_s=GRACE_S)
            if failure:
                raise WorkerFailed(failure) from error
            raise
        for child in children:  # rank 0's body is done; the others finish the same loop
            child.join(timeout.total_seconds())
        failure = _failure(children, errors, wait_s=0.0)
        if failure:
            raise WorkerFailed(failure)
    finally:
        watcher.stop()
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        _stop(children)
        errors.close()


def _wait_until_ready(store, children, errors, timeout: timedelta) -> None:
    """Wait until every rank reached the store (so a rank that cannot even start fails fast)."""
    keys = [f"ready/{c.dp_rank}" for c in children]
    deadline = time.monotonic() + timeout.total_seconds()
    while not store.check(keys):
        failure = _failure(children, errors, wait_s=0.0)
        if failure:
            raise WorkerFailed(failure)
        if time.monotonic() > deadline:
            raise WorkerFailed(f"data-parallel workers did not start within {timeout}")
        time.sleep(0.05)


def _failure(children, errors, wait_s: float) -> str | None:
    """A message about the first rank that reported an error or exited non-zero, else None.

    Waits up to `wait_s` for one to do so (a rank's error arrives just before it exits).
    """
    deadline = time.monotonic() + wait_s
    while True:
        if not errors.empty():
            rank, text = errors.get()
            return f"data-parallel worker rank {rank} failed:\n{text}"
        for child in children:
            if child.exitcode not in (None, 0):
                return (
                    f"data-parallel worker rank {child.dp_rank} died with "
                    f"{_describe_exit(child.exitcode)} and no Python error (killed? out of memory?)"
                )
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _exit_code(child, wait_s: float = 1.0) -> int | None:
    """`child.exitcode` once its sentinel fired. Reading it from the watcher thread can race
    with the main thread reaping the process (`exitcode` is then None for a moment)."""
    deadline = time.monotonic() + wait_s
    while child.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return child.exitcode


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown exit status"
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _stop(children, wait_s: float = 10.0) -> None:
    """Make sure no rank outlives the trial: terminate, then kill, the ones still running (after
    a success they have all exited; after a failure they would only wait for rank 0)."""
    for child in children:
        if child.is_alive():
            child.terminate()
            child.join(wait_s)
        if child.is_alive():
            child.kill()
            child.join()


class _Watcher:
    """Rank 0's lookout: when another rank dies mid-training, say so at once, and abort an NCCL
    communicator (a collective with a dead NCCL peer would otherwise block until the timeout)."""

    def __init__(self, children, backend: str):
        self.children, self.backend = children, backend
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bertabl-dp-watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.ident is not None:
            self.thread.join()

    def _run(self) -> None:
        pending = {c.sentinel: c for c in self.children}
        while pending and not self.stopped.is_set():
            for sentinel in multiprocessing.connection.wait(list(pending), timeout=0.5):
                child = pending.pop(sentinel)
                code = _exit_code(child)
                if code != 0 and not self.stopped.is_set():
                    self._on_death(child, code)

    def _on_death(self, child, code: int | None) -> None:
        print(
            f"bertabl: data-parallel worker rank {child.dp_rank} exited with "
            f"{_describe_exit(code)}; stopping the trial",
            file=sys.stderr,
            flush=True,
        )
        if self.backend == "nccl" and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.group.WORLD._get_backend(torch.device("cuda")).abort()


def _child_main(
    rank: int,
    world: int,
    port: int,
    device: torch.device,
    backend: str,
    *,
    timeout: timedelta,
    errors,
    entry: Callable[..., Any],
    args: tuple,
    threads: int,
) -> None:
    """Entry of ranks 1..k-1 (in a spawned process)."""
    _exit_with_parent()
    try:
        os.environ.update(MASTER_ADDR=HOST, MASTER_PORT=str(port))
        torch.set_num_threads(threads)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        store = dist.TCPStore(HOST, port, world, is_master=False, timeout=timeout)
        store.set(f"ready/{rank}", "1")
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
        entry(Group(rank, world, device, backend), *args)
    except BaseException:
        errors.put((rank, traceback.format_exc()[-MAX_TRACEBACK:]))
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _exit_with_parent() -> None:
    """End this process when rank 0's process ends (killed with the trial, say)."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="bertabl-dp-parent", daemon=True).start()
