"""Resources per stage: `[resources.pretrain]` and `[resources.finetune]`, over the flat keys.

A stage's trials run `workers` processes of `cpus_per_worker` CPUs and `gpus_per_worker` GPUs
each, packed onto as few nodes as possible or spread over as many (`placement`). A key a stage
leaves out comes from the flat `[resources]` keys, as before stages had their own: `cpus_per_trial`
and `gpus_per_trial` for both stages, `workers_per_trial` and `micro_batch_size` for pre-training
(fine-tuning runs one worker unless `[resources.finetune] workers` says otherwise). Resources
are not part of trial ids: they change where and how fast a trial runs, not what it computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from bertabl.trial.strict import Strict

Placement = Literal["pack", "spread"]
STAGES = ("pretrain", "finetune")


class StageResources(Strict):
    """One stage's per-trial resources; a key left out takes the flat [resources] default."""

    workers: int | None = Field(
        None,
        ge=1,
        description="data-parallel processes per trial (Ray Train workers when > 1; one per "
        "GPU on GPU hosts); default: workers_per_trial for pre-training, 1 for fine-tuning",
    )
    cpus_per_worker: float | None = Field(None, gt=0, description="default: cpus_per_trial")
    gpus_per_worker: float | None = Field(
        None,
        ge=0,
        description="default: gpus_per_trial; a fraction (sharing a GPU) only with workers = 1",
    )
    placement: Placement = Field(
        "pack",
        description="pack: the workers on as few nodes as possible; spread: over as many",
    )


class PretrainResources(StageResources):
    micro_batch_size: int | None = Field(
        None, ge=0, description="default: micro_batch_size (see there)"
    )


@dataclass(frozen=True)
class TrialResources:
    """What each trial of one stage gets, resolved; `keys` names the matrix key each value came
    from (for error messages)."""

    stage: str
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    placement: str
    micro_batch_size: int = 0
    keys: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def bundle(self) -> dict[str, float]:
        """One worker's Ray resources."""
        return {"CPU": self.cpus_per_worker, "GPU": self.gpus_per_worker}

    def params(self) -> dict[str, Any]:
        """The trial's share of its Tune config (plain values: Tune pickles it)."""
        return {
            "workers": self.workers,
            "cpus_per_worker": self.cpus_per_worker,
            "gpus_per_worker": self.gpus_per_worker,
            "placement": self.placement,
            "micro_batch_size": self.micro_batch_size,
        }

    def problem(self) -> str | None:
        """A GPU count Ray cannot grant, as one line naming the key; None when it is fine."""
        gpus, key = self.gpus_per_worker, self.keys["gpus_per_worker"]
        if gpus > 1 and gpus != int(gpus):
            return (
                f"{key} = {gpus:g}: Ray grants a fraction of one GPU, or whole GPUs; use "
                f"{int(gpus)} or {int(gpus) + 1}"
            )
        if self.workers > 1 and gpus != int(gpus):
            return (
                f"{key} = {gpus:g} with {self.keys['workers']} = {self.workers}: a fraction of "
                "a GPU is for single-worker trials only (each data-parallel worker needs whole "
                f"GPUs of its own); set resources.{self.stage}.gpus_per_worker = 1, or "
                f"{self.keys['workers']} = 1"
            )
        return None


def resolve(resources: Any, stage: str) -> TrialResources:
    """Stage `stage`'s resources out of a `schema.Resources` (its section over the flat keys)."""
    section: StageResources = getattr(resources, stage)
    flat = {
        "workers": ("workers_per_trial" if stage == "pretrain" else None),
        "cpus_per_worker": "cpus_per_trial",
        "gpus_per_worker": "gpus_per_trial",
        "micro_batch_size": ("micro_batch_size" if stage == "pretrain" else None),
    }
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for name, fallback in flat.items():
        own = getattr(section, name, None)
        if own is not None:
            values[name], keys[name] = own, f"resources.{stage}.{name}"
        elif fallback is not None:
            values[name], keys[name] = getattr(resources, fallback), f"resources.{fallback}"
        else:  # fine-tuning's default: one worker, no micro-batches of its own
            values[name] = 1 if name == "workers" else 0
            keys[name] = f"resources.{stage}.{name}"
    keys["placement"] = f"resources.{stage}.placement"
    return TrialResources(stage, placement=section.placement, keys=keys, **values)
