"""Ray Tune's trial events, forwarded to a RunObserver (the live progress, or nothing).

Its own module because it imports Ray Tune (~1 s): only a run that has trials to run pays for
that, not a re-run of a finished matrix, `status` or `report`.
"""

from __future__ import annotations

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.params import trial_params


class TuneEvents(tune.Callback):
    """Forwards Tune's trial events (in the driver process) to a RunObserver."""

    def __init__(self, observer: RunObserver):
        self.observer = observer

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; the observer (a live console)
        # only matters in this driver process, and a restored run is given a fresh one.
        return {"observer": RunObserver()}

    @staticmethod
    def _id(trial) -> str:
        return trial_params(trial.config).id

    def on_trial_start(self, iteration, trials, trial, **info):
        self.observer.trial_started(self._id(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.observer.trial_result(self._id(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.observer.trial_done(self._id(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        error = getattr(trial, "error_msg", None) or "error (see the trial's record)"
        self.observer.trial_failed(self._id(trial), str(error).strip().splitlines()[-1])


class TrackingEvents(tune.logger.LoggerCallback):
    """Hands each trial's reported results to the experiment tracker (orchestrate/tracking.py),
    without the keys Tune adds to every result (clocks, pids, the config)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; open event files do not pickle,
        # and a restored run makes a new tracker.
        return {"tracker": None}

    def log_trial_result(self, iteration, trial, result):
        if self.tracker is not None:
            reported = {k: v for k, v in result.items() if k not in TUNE_KEYS}
            self.tracker.result(trial_params(trial.config).id, reported)

    def log_trial_end(self, trial, failed=False):
        if self.tracker is not None:
            self.tracker.end(trial_params(trial.config).id)

    def on_experiment_end(self, trials, **info):
        if self.tracker is not None:
            self.tracker.close()


class StopOnRequest(tune.Stopper):
    """Ends the Tune run once a stop is requested (orchestrate/interrupt.py): Tune stops every
    running trial and starts no other."""

    def __init__(self, request):
        self.request = request

    def __call__(self, trial_id, result) -> bool:
        return False  # trials end by themselves; only the whole run is stopped

    def stop_all(self) -> bool:
        return self.request.requested


# Tune's own keys in a result (beside what the trial body reported)
TUNE_KEYS = {
    *AUTO_RESULT_KEYS,
    "done",
    "trial_id",
    "experiment_id",
    "experiment_tag",
    "should_checkpoint",
}
