"""Typed records (orchestrate/record.py): the JSON on disk is what it was, read back as typed
fields, and what a trial's status is when it has no record."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bertabl.orchestrate.record import Record, Status, Timings, Worker, status_of
from bertabl.orchestrate.store import RunStore
from tests.conftest import make_record

# A record as bertabl wrote it before records were typed (keys sorted, NaN for a diverged run),
# with a key this version does not know.
ON_DISK = {
    "config": {"stage": "finetune", "task": "sst2"},
    "error": None,
    "history": [{"epoch": 1, "dev_accuracy": 0.5}],
    "id": "ft-0123abcd",
    "metrics": {"dev_accuracy": math.nan, "epoch": 1},
    "stage": "finetune",
    "status": "done",
    "timings": {"attempt": 1, "resumed_from_step": None, "seconds": 12.5},
    "workers": [{"device": "cpu", "node_id": "n", "node_ip": "1.2.3.4", "pid": 7, "rank": 0}],
    "written_at": 1700000000.0,
    "from_a_newer_bertabl": [1, 2],
}


def test_a_record_on_disk_reads_typed_and_rewrites_unchanged(tmp_path: Path):
    store = RunStore(tmp_path)
    path = store.trial_dir("ft-0123abcd") / "record.json"
    path.parent.mkdir(parents=True)
    text = json.dumps(ON_DISK, indent=2, sort_keys=True)
    path.write_text(text)
    record = store.record("ft-0123abcd")
    assert record.status is Status.DONE and record.done
    assert record.timings.seconds == 12.5 and record.timings.attempt == 1
    assert record.workers == [Worker(rank=0, node_id="n", node_ip="1.2.3.4", pid=7, device="cpu")]
    assert math.isnan(record.score("dev_accuracy")) and record.finite_score("dev_accuracy") is None
    assert record.seconds == 12.5
    store.update_metrics("ft-0123abcd", {"test_accuracy": 0.75})
    rewritten = json.loads(path.read_text())
    metrics = rewritten.pop("metrics")
    assert math.isnan(metrics.pop("dev_accuracy"))  # not null: a diverged score stays one
    assert metrics == {"epoch": 1, "test_accuracy": 0.75}
    expected = {k: v for k, v in ON_DISK.items() if k != "metrics"}
    assert rewritten == expected  # every other key as it was, the unknown one too


def test_a_written_record_is_the_json_bertabl_always_wrote(tmp_path: Path):
    store = RunStore(tmp_path)
    timings = Timings(seconds=3.0, attempt=2)
    store.write_record("pt-00000001", {"stage": "pretrain"}, Status.FAILED, error="boom",
                       timings=timings)  # fmt: skip
    on_disk = json.loads((tmp_path / "trials/pt-00000001/record.json").read_text())
    assert on_disk.pop("written_at") > 0
    assert on_disk == {
        "id": "pt-00000001",
        "stage": "pretrain",
        "status": "failed",
        "config": {"stage": "pretrain"},
        "metrics": {},
        "history": [],
        "timings": {"seconds": 3.0, "attempt": 2},  # only what was measured
        "error": "boom",
        "workers": [],
    }


def test_scores_come_from_finished_trials_only():
    done = make_record("ft-1", metrics={"dev_f1": 0.5, "count": 3})
    failed = make_record("ft-2", "failed", metrics={"dev_f1": 0.9})
    assert done.score("dev_f1") == 0.5 and done.score("count") == 3.0
    assert done.score("dev_accuracy") is None
    assert failed.score("dev_f1") is None and failed.seconds == 0.0
    assert make_record("ft-3", timings={"seconds": 2.5}).seconds == 2.5
    assert make_record("ft-4").seconds == 0.0  # not measured


def test_a_trial_without_a_record_is_pending():
    assert status_of(None) is Status.PENDING
    assert status_of(make_record("ft-1", "blocked")) is Status.BLOCKED
    assert Status.DONE == "done" and f"{Status.INTERRUPTED}" == "interrupted"
    assert Record.model_validate(ON_DISK).status == "done"
