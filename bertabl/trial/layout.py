"""How a pre-training batch splits over data-parallel workers and micro-batches.

Torch-free on purpose: the plan checks every matrix's layout (`bertabl plan`, `run`, `report`),
and importing torch would add about a second to each command.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertabl.errors import UserError


@dataclass(frozen=True)
class BatchLayout:
    """How one global batch is split: `workers` equal slices, each in micro-batches."""

    batch_size: int  # sequences per optimizer step, over all ranks (pretrain.batch_size)
    workers: int
    micro_batch_size: int  # sequences per forward pass in one rank

    @property
    def per_worker(self) -> int:
        return self.batch_size // self.workers

    @property
    def accumulation_steps(self) -> int:
        return self.per_worker // self.micro_batch_size

    def rows(self, rank: int) -> list[slice]:
        """Rank `rank`'s micro-batches, as rows of the global batch (rank*per_worker onwards):
        each rank builds only these."""
        start = rank * self.per_worker
        return [
            slice(i, i + self.micro_batch_size)
            for i in range(start, start + self.per_worker, self.micro_batch_size)
        ]


def batch_layout(
    batch_size: int,
    workers: int,
    micro_batch_size: int = 0,
    workers_key: str = "resources.workers_per_trial",
    micro_key: str = "resources.micro_batch_size",
) -> BatchLayout:
    """The layout for a trial's settings (micro_batch_size 0 = the whole per-worker slice).

    Raises `UserError` naming the matrix keys (`workers_key`, `micro_key`: where the values
    came from) when the numbers do not divide.
    """
    if workers < 1:
        raise UserError(f"{workers_key} = {workers}; it must be at least 1")
    if batch_size % workers:
        raise UserError(
            f"pretrain.batch_size = {batch_size} does not split evenly over "
            f"{workers_key} = {workers}; make the batch size a multiple of the worker count"
        )
    per_worker = batch_size // workers
    micro = micro_batch_size or per_worker
    if micro < 0 or per_worker % micro:
        raise UserError(
            f"{micro_key} = {micro_batch_size} must divide the sequences each "
            f"worker gets per step, pretrain.batch_size / {workers_key} = "
            f"{batch_size} / {workers} = {per_worker}; use a divisor of {per_worker} "
            "(or 0 for no gradient accumulation)"
        )
    return BatchLayout(batch_size, workers, micro)
