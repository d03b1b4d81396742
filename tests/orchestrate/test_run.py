"""Running a plan, without Ray where Ray is not the point: what is skipped, what is blocked and
why, which resources fail before anything starts, and the one line an error becomes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from bertabl.errors import UserError
from bertabl.matrix import build_plan
from bertabl.matrix.load import MatrixSource, tomllib, validate
from bertabl.matrix.schema import Resources
from bertabl.orchestrate import run
from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.placement import Node
from bertabl.orchestrate.record import Status
from bertabl.orchestrate.store import RunStore
from tests.conftest import TINY_MATRIX

SOURCE = MatrixSource(path="m.toml", sha256="0" * 64, scale="tiny")


class Recorder(RunObserver):
    def __init__(self):
        self.events: list[tuple] = []

    def skipped(self, trial_ids):
        self.events.append(("skipped", len(trial_ids)))

    def blocked(self, trial_id, reason):
        self.events.append(("blocked", trial_id, reason))


@pytest.fixture
def plan():
    return build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))


def _done(store: RunStore, trials) -> None:
    for trial in trials:
        store.write_record(trial.id, trial.config.model_dump(mode="json"), Status.DONE)


def test_a_finished_plan_runs_nothing_and_starts_no_ray(plan, tmp_path: Path, monkeypatch):
    store = RunStore(tmp_path)
    _done(store, [*plan.pretrain, *plan.finetune])

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start when every trial is done")

    monkeypatch.setattr(run, "ray_session", no_ray)
    observer = Recorder()
    summary = run.run_plan(plan, store, SOURCE, observer)
    assert len(summary.skipped) == len(plan.pretrain) + len(plan.finetune)
    assert summary.done == summary.failed == summary.blocked == []
    assert observer.events == [("skipped", len(plan.pretrain)), ("skipped", len(plan.finetune))]
    assert (tmp_path / "matrix.json").is_file()


def test_a_fine_tune_is_blocked_with_its_pretrainings_error(plan, tmp_path: Path):
    store = RunStore(tmp_path)
    trial = plan.finetune[0]
    assert run._blocked_reason(trial, store) == f"pre-training {trial.pretrain_id} did not finish"
    assert "failed (its record has the error)" in run._blocked_reason(trial, store, failed=True)
    pretraining = plan.trial(trial.pretrain_id)
    config = pretraining.config.model_dump(mode="json")
    store.write_record(pretraining.id, config, Status.FAILED, error="loss became nan at step 3")
    assert run._blocked_reason(trial, store) == (
        f"pre-training {trial.pretrain_id} failed: loss became nan at step 3"
    )
    store.write_record(pretraining.id, config, Status.DONE)
    assert run._blocked_reason(trial, store) is None


ONE_NODE = [Node(cpus=2.0, gpus=0.0)]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"gpus_per_trial": 1.0}, r"resources\.gpus_per_trial = 1 but the Ray cluster's 1 node"),
        ({"cpus_per_trial": 4.0}, r"resources\.cpus_per_trial = 4: one worker \(4 CPU, 0 GPU\)"),
        (
            {"cpus_per_trial": 1.0, "workers_per_trial": 3},
            r"resources\.workers_per_trial = 3: .* there is room for 2 ",
        ),
        ({"precision": "fp16"}, "'fp16' needs GPUs"),
    ],
)
def test_resources_the_cluster_lacks_fail_before_any_trial(resources, message):
    with pytest.raises(UserError, match=message):
        run.check_resources(ONE_NODE, Resources(**resources))


def test_resources_that_fit_pass():
    run.check_resources([Node(cpus=2.0, gpus=1.0)], Resources(gpus_per_trial=0.5))


def test_only_the_stages_that_run_are_checked():
    resources = Resources(finetune={"gpus_per_worker": 1})  # fine-tunes on a GPU ...
    run.check_resources(ONE_NODE, resources, ["pretrain"])  # ... but only pre-training runs
    with pytest.raises(UserError, match=r"resources\.finetune\.gpus_per_worker = 1"):
        run.check_resources(ONE_NODE, resources, ["pretrain", "finetune"])


def test_resources_are_checked_before_the_data_is_prepared(plan, tmp_path: Path, monkeypatch):
    events: list[str] = []

    def session(refuse: bool):
        @contextlib.contextmanager
        def ray_session(address, resources, stages):
            events.append(f"placement of {'+'.join(stages)}")
            if refuse:  # what check_resources raises on a machine without the GPU asked for
                raise UserError("resources.gpus_per_trial = 1 but ... (no GPU)")
            yield []

        return ray_session

    monkeypatch.setattr(run, "prepare_data", lambda trials, *_: events.append("data"))
    monkeypatch.setattr(run, "_run_trials", lambda *args: events.append("trials"))
    monkeypatch.setattr(run, "ray_session", session(refuse=True))
    with pytest.raises(UserError, match="no GPU"):
        run.run_plan(plan, RunStore(tmp_path / "refused"), SOURCE, Recorder())
    assert events == ["placement of pretrain+finetune"]  # no data prepared

    events.clear()
    monkeypatch.setattr(run, "ray_session", session(refuse=False))
    run.run_plan(plan, RunStore(tmp_path / "placed"), SOURCE, Recorder())
    assert events == ["placement of pretrain+finetune", "data", "trials"]


def test_gpus_this_torch_cannot_use_fail_before_any_trial(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run.check_local_gpus(Resources(), ["pretrain", "finetune"])  # no GPU asked for: fine
    resources = Resources(finetune={"gpus_per_worker": 1})
    run.check_local_gpus(resources, ["pretrain"])  # only pre-training runs, on CPU
    with pytest.raises(UserError, match=r"gpus_per_trial = 1 but this torch"):
        run.check_local_gpus(resources, ["pretrain", "finetune"])


def test_an_error_is_its_innermost_cause_last_line():
    class Wrapped(Exception):
        def __init__(self, text: str, cause: Exception | None = None):
            super().__init__(text)
            self.cause = cause

    inner = Wrapped("Traceback (most recent call last):\n  ...\nFloatingPointError: loss nan")
    assert run.error_summary(Wrapped("RayTaskError: wrapped", inner)) == (
        "FloatingPointError: loss nan"
    )
    assert run.error_summary(ValueError()) == "ValueError"


# What Ray 2.60's Tune raised when the memory monitor killed two trial workers of a
# `bertabl run` (recipes_cpu beside other jobs on a 24 GB machine), abridged.
RAY_OOM = (
    "Caught unexpected exception: 2 worker(s) were killed due to the node running low on "
    "memory. Memory on the node (IP: 192.0.2.2, ID: 9a89) was 22.50GB used / 23.54GB limit "
    "(0.955659)\nOOM kill reason: Memory usage 24138858496B exceeded threshold"
)


def test_an_out_of_memory_kill_is_one_line_that_says_how_to_go_on(tmp_path: Path):
    def fit():
        raise RuntimeError(RAY_OOM)

    with pytest.raises(UserError) as caught:
        run.fit_or_explain(fit, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "22.50GB used / 23.54GB limit" in message
    assert f"bertabl resume {tmp_path}" in message
    assert "resources.max_concurrent_trials=1" in message


def test_other_tune_errors_keep_their_traceback(tmp_path: Path):
    def fit():
        raise RuntimeError("Caught unexpected exception: something else")

    with pytest.raises(RuntimeError, match="something else"):
        run.fit_or_explain(fit, tmp_path)
    assert run.fit_or_explain(lambda: "results", tmp_path) == "results"
