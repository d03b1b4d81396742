"""The run's data-preparation step: before Ray and any trial, once per run directory."""

from __future__ import annotations

from pathlib import Path

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.prepare import prepare_data
from bertabl.orchestrate.store import RunStore
from tests.conftest import TINY_MATRIX


class Recorder(RunObserver):
    def __init__(self):
        self.events: list[tuple] = []

    def preparing(self, what, total, unit):
        self.events.append(("preparing", what, total, unit))

    def prepare_progress(self, done):
        self.events.append(("progress", done))

    def prepared(self, summary, seconds):
        self.events.append(("prepared", summary))


def test_prepared_once_per_run_directory(tmp_path: Path):
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    store, observer = RunStore(tmp_path), Recorder()
    prepare_data(plan.pretrain, store, observer)
    assert observer.events[0] == (
        "preparing",
        "tokenising synthetic (40 documents)",
        40.0,
        "documents",
    )
    assert observer.events[-2] == ("progress", 40.0)
    kind, summary = observer.events[-1]
    assert kind == "prepared" and "in 40 documents" in summary
    assert len(list(store.cache_dir.glob("tokens-*/meta.json"))) == 1
    observer.events.clear()
    prepare_data(plan.pretrain, store, observer)  # a second run: nothing to do, nothing shown
    assert observer.events == []
