"""Custom tasks' `evaluate:` metrics: a local module loads offline, keys and ids follow its name
and content (not its path), a fine-tune scores with it, provenance names it with its hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bertabl.errors import DataError, MatrixError
from bertabl.finetune.epoch_loop import finetune
from bertabl.matrix.cells import cell_trials
from bertabl.pretrain.step_loop import pretrain
from bertabl.report.provenance import evaluate_provenance
from bertabl.tasks import evaluate_metric
from bertabl.tasks.catalogue import spec_of
from bertabl.training import TrialRuntime
from tests.conftest import FIXTURES, make_record
from tests.tasks.test_custom import _plan, _reviews

MODULE = FIXTURES / "evaluate" / "balanced_accuracy.py"
ENTRY = f"evaluate:{MODULE}"


def _balanced_accuracy(predictions: list, references: list) -> float:
    """Mean per-class recall, by hand (the module's definition)."""
    recalls = []
    for label in sorted(set(references)):
        picked = [p for p, r in zip(predictions, references, strict=True) if r == label]
        recalls.append(sum(p == label for p in picked) / len(picked))
    return sum(recalls) / len(recalls)


def test_keys_come_from_the_entry_text():
    assert evaluate_metric.metric_key(ENTRY) == "balanced_accuracy"
    assert evaluate_metric.metric_key("evaluate:evaluate-metric/f1") == "f1"
    assert evaluate_metric.metric_key("evaluate:some/folder/") == "folder"
    assert evaluate_metric.metric_key("macro_f1") == "macro_f1"


def test_a_local_module_loads_offline_and_scores_the_known_answer(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    identity, location = evaluate_metric.identity_and_location([ENTRY, "accuracy"])
    assert list(identity) == ["balanced_accuracy"] and "sha256" in identity["balanced_accuracy"]
    score = evaluate_metric.scorer("balanced_accuracy", identity, location)
    # class 0: 1 of 2 right, class 1: 2 of 2 -> (0.5 + 1) / 2 (plain accuracy would be 0.75)
    assert score([0, 1, 1, 1], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert score([0, 0, 0, 1, 2], [0, 1, 1, 1, 2]) == pytest.approx(
        _balanced_accuracy([0, 0, 0, 1, 2], [0, 1, 1, 1, 2])
    )


def test_ids_follow_the_module_content_not_its_path(tmp_path: Path):
    moved = tmp_path / "balanced_accuracy.py"
    shutil.copy(MODULE, moved)
    here = _plan({"reviews": _reviews(metrics=[ENTRY, "accuracy"])})
    there = _plan({"reviews": _reviews(metrics=[f"evaluate:{moved}", "accuracy"])})
    assert [t.id for t in here.finetune] == [t.id for t in there.finetune]
    data = there.finetune[0].config.task_data
    assert data.identity["definition"]["metrics"] == ["evaluate:balanced_accuracy", "accuracy"]
    assert data.location["evaluate"] == {"balanced_accuracy": str(moved.resolve())}
    spec = spec_of("reviews", data)  # as a Ray worker rebuilds it
    assert spec.metrics == ("balanced_accuracy", "accuracy")
    assert there.matrix.metric_for("reviews") == "balanced_accuracy"
    moved.write_text(MODULE.read_text() + "\n# changed\n")
    changed = _plan({"reviews": _reviews(metrics=[f"evaluate:{moved}", "accuracy"])})
    assert not {t.id for t in here.finetune} & {t.id for t in changed.finetune}
    plain = _plan({"reviews": _reviews()})  # no evaluate metric: no new identity keys
    assert "evaluate" not in plain.finetune[0].config.task_data.identity


def test_a_missing_module_fails_at_plan_time(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope\.py: no evaluate metric module there"):
        _plan({"reviews": _reviews(metrics=[f"evaluate:{tmp_path / 'nope.py'}"])})


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (["evaluate:"], r"metrics\[0\]: .*'evaluate:' is not a metric; use one of accuracy"),
        (["acuracy"], r"'acuracy' is not a metric"),
        ([ENTRY, f"evaluate:{MODULE}"], r"metrics name \['balanced_accuracy'\] twice"),
        (["evaluate:x/2fast.py"], "an evaluate metric's name must be a word"),
    ],
)
def test_bad_evaluate_entries_are_one_line_errors(metrics, message):
    with pytest.raises(MatrixError, match=message) as raised:
        _plan({"reviews": _reviews(metrics=metrics)})
    assert "\n" not in str(raised.value)


def test_an_unloadable_hub_metric_is_a_data_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="could not be loaded .*offline, give a local module"):
        evaluate_metric.load("no-such-metric-anywhere")


def test_a_fine_tune_scores_dev_with_the_evaluate_metric(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = _plan({"reviews": _reviews(metrics=[ENTRY, "accuracy"])})
    pretrain(plan.pretrain[0].config, tmp_path / "pt", TrialRuntime(torch.device("cpu")))
    trial = cell_trials(plan, plan.rows[0], "reviews")[0]
    out = tmp_path / "ft"
    result = finetune(
        trial.config, tmp_path / "pt" / "model", out, TrialRuntime(torch.device("cpu"))
    )
    lines = [json.loads(x) for x in (out / "predictions" / "dev.jsonl").read_text().splitlines()]
    predictions, references = [x["prediction"] for x in lines], [x["label"] for x in lines]
    assert result["dev_balanced_accuracy"] == pytest.approx(
        _balanced_accuracy(predictions, references)
    )
    assert result["dev_accuracy"] == pytest.approx(
        sum(p == r for p, r in zip(predictions, references, strict=True)) / len(lines)
    )


def test_provenance_names_the_module_its_hash_and_evaluate_version():
    from importlib import metadata

    line = evaluate_provenance([ENTRY, "accuracy"])
    sha = evaluate_metric.identity_and_location([ENTRY])[0]["balanced_accuracy"]["sha256"]
    assert line == (
        f"; metrics via `evaluate` {metadata.version('evaluate')}: `balanced_accuracy` "
        f"(`{MODULE}`, sha256 `{sha}`)"
    )
    assert evaluate_provenance(["accuracy"]) == ""
    assert "`f1` (Hub metric `evaluate-metric/f1`)" in evaluate_provenance(
        ["evaluate:evaluate-metric/f1"]
    )


def test_a_report_of_an_evaluate_metric_compares_restart_scores():
    """significance.py has no per-example definition of a module's metric: with predictions
    kept, cells still render, their p-values from restart scores (sign flips)."""
    from bertabl.report.layouts import build_report

    plan = _plan({"reviews": _reviews(metrics=[ENTRY])})
    records = {}
    for trial in plan.finetune:
        score = 0.5 + 0.1 * trial.restart
        records[trial.id] = make_record(trial.id, metrics={"dev_balanced_accuracy": score})
    lines = [{"index": 0, "prediction": "neg", "label": "neg"}]
    report = build_report(plan, records, predictions=lambda trial_id, split: lines)
    cells = [cell for table in report.tables for line in table.lines for cell in line.cells]
    shown = [c for c in cells if c.value is not None]
    assert shown and all(c.value == pytest.approx(55.0) for c in shown)  # mean of 50 and 60
    assert all(c.stalled == 0 for c in shown)
