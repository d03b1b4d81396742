"""Both stages in one Ray Tune run: a Searcher that hands Tune each trial once it may start.

Tune's grid search knows nothing of "this fine-tune needs that pre-training". Running the two
stages as two Tune runs respects it, but waits for the slowest pre-training before any
fine-tune starts and pays a second Tune start (and a second worker process importing torch
and transformers: ~6 s here, a third of a small run's orchestration time). This Searcher gives
Tune the pre-training trials first, then each fine-tuning trial as soon as its pre-training
has settled: done (it runs) or failed (it is blocked, never run). With `reuse_actors` one
warm worker runs trial after trial, across stages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from bertabl.matrix.plan import FinetuneTrial, PretrainTrial


class DependencySearcher(Searcher):
    """Suggests `pretrain` in order, then each of `finetune` once its `pretrain_id` is not
    among the pre-training trials still to finish in this run.

    `suggestion(stage, trial)` is the Tune config of a trial; `release(trial, failed)` decides
    whether a fine-tune whose pre-training has settled runs (True) or is blocked (False, and it
    records why); `failed` says whether that pre-training ended in an error in this run.
    `admits[stage]`: how many of the stage's trials may run at once (None = no limit but
    Tune's): a data-parallel trial's workers are asked for by Ray Train, out of Tune's sight,
    so Tune alone would start every such trial at once and leave most of them waiting.
    """

    def __init__(
        self,
        pretrain: list[PretrainTrial],
        finetune: list[FinetuneTrial],
        suggestion: Callable[[str, Any], dict[str, Any]],
        release: Callable[[FinetuneTrial, bool], bool],
        admits: dict[str, int | None] | None = None,
    ):
        super().__init__()
        self.pretrain = list(pretrain)
        self.waiting = list(finetune)
        self.unsettled = {t.id for t in pretrain}  # pre-training trials not finished yet
        self.failed: set[str] = set()
        self.suggestion = suggestion
        self.release = release
        self.admits = {stage: n for stage, n in (admits or {}).items() if n is not None}
        self.running: dict[str, str] = {}  # Tune's trial id -> stage, for the admitted stages
        self.ours: dict[str, str] = {}  # Tune's trial id -> bertabl's

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm into the experiment state. The callables hold the
        # run directory and the live console; bertabl never restores a Tune experiment (a
        # re-run skips finished trials by their records), so the pickle leaves them out.
        return {k: v for k, v in self.__dict__.items() if k not in ("suggestion", "release")}

    def _room(self, stage: str) -> bool:
        limit = self.admits.get(stage)
        return limit is None or sum(s == stage for s in self.running.values()) < max(1, limit)

    def _start(self, trial_id: str, stage: str, trial) -> dict[str, Any]:
        self.ours[trial_id] = trial.id
        if stage in self.admits:
            self.running[trial_id] = stage
        return self.suggestion(stage, trial)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.pretrain and self._room("pretrain"):
            return self._start(trial_id, "pretrain", self.pretrain.pop(0))
        index = 0
        while index < len(self.waiting) and self._room("finetune"):
            trial = self.waiting[index]
            if trial.pretrain_id in self.unsettled:
                index += 1
                continue
            del self.waiting[index]
            if self.release(trial, trial.pretrain_id in self.failed):
                return self._start(trial_id, "finetune", trial)
        # None: nothing can start now (Tune asks again); FINISHED: nothing is left to suggest.
        return None if self.waiting or self.pretrain else Searcher.FINISHED

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        self.running.pop(trial_id, None)
        ours = self.ours.get(trial_id)
        if ours in self.unsettled:
            self.unsettled.discard(ours)
            if error:
                self.failed.add(ours)
