"""What a trial receives from the run, typed: Tune hands every trainable a config dict, and
bertabl's holds one entry, `trial`, a `TrialParams`. The run builds it (run.py); the trainable,
its ranks and Ray Train's workers read its attributes (trainables.py, rank.py,
train_workers.py). Paths are absolute: Ray runs trials in their own working directory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bertabl.matrix.resources import TrialResources
from bertabl.trial.finetune import FinetuneConfig, TestTrialConfig
from bertabl.trial.pretrain import PretrainTrialConfig

TUNE_KEY = "trial"  # the one key of bertabl's Tune config


@dataclass(frozen=True)
class RunSettings:
    """What every trial of one `bertabl run` shares (none of it is part of a trial id)."""

    run_dir: str
    checkpoint_every: int
    checkpoint_keep: int
    precision: str
    deterministic: bool
    worker_restarts: int  # Ray Train's restarts of a data-parallel trial's workers
    train_storage: str  # Ray Train's own run state (a few small files per data-parallel trial)
    save_steps: Mapping[str, list[int]]  # pre-training id -> intermediate models it must keep


@dataclass(frozen=True)
class TrialParams:
    """One trial as its trainable runs it: which trial, with what resources, in which run."""

    id: str
    stage: str  # "pretrain" | "finetune" | "test"
    config: PretrainTrialConfig | FinetuneConfig | TestTrialConfig
    resources: TrialResources
    run: RunSettings

    @property
    def save_steps(self) -> tuple[int, ...]:
        """The intermediate models this (pre-training) trial must keep."""
        return tuple(self.run.save_steps.get(self.id, ()))

    def tune_config(self) -> dict[str, Any]:
        return {TUNE_KEY: self}


def trial_params(tune_config: Mapping[str, Any]) -> TrialParams:
    """The TrialParams inside a Tune config (a trainable's argument, a Tune trial's config)."""
    return tune_config[TUNE_KEY]
