"""All stages in one Ray Tune run: a Searcher that hands Tune each trial once it may start.

Tune's grid search knows nothing of "this fine-tune needs that pre-training". Running stages
as separate Tune runs respects it, but waits for the slowest trial of a stage before any of
the next starts and pays another Tune start (and another worker process importing torch and
transformers: ~6 s here, a third of a small run's orchestration time). This Searcher gives
Tune each trial as soon as the trials it depends on have settled: pre-training trials depend
on nothing, a fine-tune on its pre-training, a test-split scoring on its cell's fine-tunes.
Settled means done (it may run) or failed or blocked (`release` decides: it records why a
trial is blocked, never running it). With `reuse_actors` one warm worker runs trial after
trial, across stages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

Waiting = tuple[str, Any, set[str]]  # (stage, trial, ids of the trials it depends on)


class DependencySearcher(Searcher):
    """Suggests `trials` in order, each once none of its dependencies is still to settle in
    this run (a dependency that is not a trial of this run has settled before it).

    `suggestion(stage, trial)` is the Tune config of a trial; `release(stage, trial, failed)`
    decides whether a trial whose dependencies have settled runs (True) or is blocked (False,
    and it records why); `failed` holds its dependencies that ended in an error in this run.
    `admits[stage]`: how many of the stage's trials may run at once (None = no limit but
    Tune's): a data-parallel trial's workers are asked for by Ray Train, out of Tune's sight,
    so Tune alone would start every such trial at once and leave most of them waiting.
    """

    def __init__(
        self,
        trials: list[Waiting],
        suggestion: Callable[[str, Any], dict[str, Any]],
        release: Callable[[str, Any, set[str]], bool],
        admits: dict[str, int | None] | None = None,
    ):
        super().__init__()
        self.waiting = list(trials)
        self.unsettled = {trial.id for _, trial, _ in trials}
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

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        index = 0
        while index < len(self.waiting):
            stage, trial, needs = self.waiting[index]
            if needs & self.unsettled or not self._room(stage):
                index += 1
                continue
            del self.waiting[index]
            if self.release(stage, trial, needs & self.failed):
                self.ours[trial_id] = trial.id
                if stage in self.admits:
                    self.running[trial_id] = stage
                return self.suggestion(stage, trial)
            self.unsettled.discard(trial.id)  # blocked: settled, and what waits on it may go
            self.failed.add(trial.id)
            index = 0  # trials waiting on it may be released now
        # None: nothing can start now (Tune asks again); FINISHED: nothing is left to suggest.
        return None if self.waiting else Searcher.FINISHED

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        self.running.pop(trial_id, None)
        ours = self.ours.get(trial_id)
        if ours in self.unsettled:
            self.unsettled.discard(ours)
            if error:
                self.failed.add(ours)
