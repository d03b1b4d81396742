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
    """

    def __init__(
        self,
        pretrain: list[PretrainTrial],
        finetune: list[FinetuneTrial],
        suggestion: Callable[[str, Any], dict[str, Any]],
        release: Callable[[FinetuneTrial, bool], bool],
    ):
        super().__init__()
        self.pretrain = list(pretrain)
        self.waiting = list(finetune)
        self.unsettled = {t.id for t in pretrain}  # pre-training trials not finished yet
        self.failed: set[str] = set()
        self.suggestion = suggestion
        self.release = release
        self.ours: dict[str, str] = {}  # Tune's trial id -> bertabl's

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm into the experiment state. The callables hold the
        # run directory and the live console; bertabl never restores a Tune experiment (a
        # re-run skips finished trials by their records), so the pickle leaves them out.
        return {k: v for k, v in self.__dict__.items() if k not in ("suggestion", "release")}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.pretrain:
            trial = self.pretrain.pop(0)
            self.ours[trial_id] = trial.id
            return self.suggestion("pretrain", trial)
        index = 0
        while index < len(self.waiting):
            trial = self.waiting[index]
            if trial.pretrain_id in self.unsettled:
                index += 1
                continue
            del self.waiting[index]
            if self.release(trial, trial.pretrain_id in self.failed):
                self.ours[trial_id] = trial.id
                return self.suggestion("finetune", trial)
        # None: nothing can start now (Tune asks again); FINISHED: nothing is left to suggest.
        return None if self.waiting else Searcher.FINISHED

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        ours = self.ours.get(trial_id)
        if ours in self.unsettled:
            self.unsettled.discard(ours)
            if error:
                self.failed.add(ours)
