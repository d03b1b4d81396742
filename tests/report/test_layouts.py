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


@pytest.mark.parametrize(("layout", "lead_cells"), [("table7", False), ("table6", True)])
def test_a_checkpoint_rows_footnote_is_numbered_only_where_a_cell_carries_it(
    tmp_path, layout, lead_cells
):
    from tests.matrix.test_models import save_tiny_bert

    raw = tomllib.loads(TINY_MATRIX)
    folder = save_tiny_bert(tmp_path / "released")
    raw["pretrain"]["variants"] = [{"name": "here"}, {"name": "released", "from": str(folder)}]
    plan = build_plan(validate(raw, "m.toml"), "m.toml")
    records = {t.id: make_record(t.id, metrics={"dev_accuracy": 0.5}) for t in plan.finetune}
    report = build_report(plan, records, layout=layout)
    numbered = MISSING["checkpoint"] in report.notes
    carried = numbered and any(
        report.notes.index(MISSING["checkpoint"]) + 1 in cell.notes
        for table in report.tables
        for line in table.lines
        for cell in line.cells
    )
    # table6 has lead cells (layers, hidden, ...) that carry the note; table7 has none, and a
    # footnote no cell points to only puzzles the reader (the table7_cpu report had one)
    assert (numbered, carried) == (lead_cells, lead_cells)
