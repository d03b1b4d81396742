"""Layouts on hand-made records: why a test column's cell is empty."""

from __future__ import annotations

import pytest

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.report.document import MISSING
from bertabl.report.layouts import build_report
from tests.conftest import FIXTURES, TINY_MATRIX, make_record

CUSTOM = FIXTURES / "custom"


def _plan():
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"]["custom_tasks"] = {
        "reviews": {
            "format": "csv",
            "train": str(CUSTOM / "reviews_train.csv"),
            "dev": str(CUSTOM / "reviews_dev.csv"),
            "test": str(CUSTOM / "reviews_test.csv"),
            "text": "review",
            "label": "stars",
            "labels": ["neg", "mid", "pos"],
        }
    }
    raw["finetune"]["tasks"] = ["reviews"]
    return build_plan(validate(raw, "tiny.toml"))


@pytest.mark.parametrize(
    ("test_status", "note"),
    [("failed", MISSING["test_failed"]), (None, MISSING["pending"])],
)
def test_a_test_cell_says_its_test_trial_failed_or_is_pending(test_status, note):
    plan = _plan()
    assert plan.tests  # a test split exists, so each cell has a test-split trial
    records = {t.id: make_record(t.id, metrics={"dev_accuracy": 0.5}) for t in plan.finetune}
    if test_status:
        records |= {t.id: make_record(t.id, test_status, stage="test") for t in plan.tests}
    report = build_report(plan, records, layout="generic")
    assert note in report.notes and MISSING["no_split"] not in report.notes
