"""Where each trial stands, read from the run directory alone (what `bertabl status` shows)."""

from __future__ import annotations

from pathlib import Path

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.orchestrate.lookup import state_counts
from bertabl.orchestrate.status import metric_line, trial_statuses
from bertabl.orchestrate.store import RunStore
from tests.conftest import TINY_MATRIX


def test_each_state_from_records_progress_checkpoints_and_the_lock(tmp_path: Path):
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    store = RunStore(tmp_path)
    done, failed = plan.pretrain
    started, checkpointed, *pending = plan.finetune
    store.write_record(done.id, done.config.model_dump(mode="json"), "done", metrics={"step": 10})
    store.write_record(failed.id, failed.config.model_dump(mode="json"), "failed", error="boom")
    store.count_attempt(failed.id)
    store.write_progress(started.id, {"epoch": 1, "dev_accuracy": 0.75})
    Checkpointer(store.trial_dir(checkpointed.id) / "checkpoints").save(4, {"step": 4})

    by_id = {s.id: s for s in trial_statuses(plan, store)}
    assert by_id[done.id].state == "done" and by_id[done.id].progress.startswith("step 10/10")
    assert (by_id[failed.id].state, by_id[failed.id].error) == ("failed", "boom")
    assert by_id[failed.id].attempts == 1
    assert by_id[started.id].state == "interrupted"  # no `bertabl run` holds the directory
    assert by_id[started.id].progress == "epoch 1/1  dev_accuracy 0.750"
    assert by_id[started.id].what == f"bert_base: {plan.describe(started.id)}"  # its row first
    assert by_id[checkpointed.id].state == "interrupted"
    assert 0 <= by_id[checkpointed.id].checkpoint_age < 60
    assert {by_id[t.id].state for t in pending} == {"pending"}
    with store.lock():  # while a run holds it, a started trial is running
        assert {s.id: s.state for s in trial_statuses(plan, store)}[started.id] == "running"
    summary = state_counts(list(by_id.values()))
    assert summary == f"1 done, 1 failed, 2 interrupted, {len(pending)} pending"


def test_metric_lines():
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    pretraining = metric_line(plan.pretrain[0].config, {"step": 5, "loss": 2.5, "nsp_acc": 0.5})
    assert pretraining == "step 5/10  loss 2.500  nsp_acc 0.500"
    assert metric_line(plan.finetune[0].config, {}) == "epoch 0/1  "
