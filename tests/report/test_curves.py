"""Learning curves from the records' histories: the numbers plotted, and the PNG in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertabl.io import tomllib
from bertabl.matrix import build_plan
from bertabl.matrix.load import validate
from bertabl.orchestrate.record import Record
from bertabl.orchestrate.store import RunStore
from bertabl.report.build import write_report
from bertabl.report.curves import finetune_curves, plot_learning_curves, pretrain_curves
from tests.conftest import TINY_MATRIX

# two grid points, so that the curve is the selected point's
MATRIX = TINY_MATRIX.replace("learning_rate = [1e-3]", "learning_rate = [1e-3, 1e-4]")


@pytest.fixture(scope="module")
def plan():
    return build_plan(validate(tomllib.loads(MATRIX), origin="tiny.toml"), "tiny.toml")


def records_of(plan) -> dict:
    """Pre-training losses falling by step; fine-tuning dev accuracy by epoch, lr 1e-3 better
    (0.6 / 0.8 over restarts 0 / 1) than 1e-4 (0.5 flat)."""
    records = {}
    for n, trial in enumerate(plan.pretrain):
        history = [{"step": s, "loss": 5.0 - s / 10 - n, "lr": 1e-3} for s in (5, 10)]
        records[trial.id] = _done(trial, history)
    for trial in plan.finetune:
        lr = dict(trial.grid_point)["learning_rate"]
        final = (0.6 + 0.2 * trial.restart) if lr == 1e-3 else 0.5
        history = [
            {"epoch": 1, "train_loss": 0.7, "dev_accuracy": final - 0.1},
            {"epoch": 2, "train_loss": 0.5, "dev_accuracy": final},
        ]
        records[trial.id] = _done(trial, history)
    return records


def _done(trial, history: list[dict]) -> Record:
    return Record(
        id=trial.id,
        stage=trial.config.stage,
        status="done",
        config={},
        metrics=history[-1],
        history=history,
    )


def test_curves_are_the_histories_and_the_selected_point_mean(plan):
    records = records_of(plan)
    assert pretrain_curves(plan, records) == {
        "MLM + NSP": [(5, 4.5), (10, 4.0)],
        "MLM only": [(5, 3.5), (10, 3.0)],
    }
    tasks = finetune_curves(plan, records)
    assert set(tasks) == {"syn_agree", "syn_chain"}
    for rows in tasks.values():  # lr 1e-3: mean of restarts 0.6 and 0.8 (0.5 and 0.7 first)
        assert rows == {
            "MLM + NSP": [(1, pytest.approx(0.6)), (2, pytest.approx(0.7))],
            "MLM only": [(1, pytest.approx(0.6)), (2, pytest.approx(0.7))],
        }


def test_the_png_is_written_deterministically_and_only_with_histories(plan, tmp_path: Path):
    records = records_of(plan)
    first = plot_learning_curves(plan, records, tmp_path / "a.png")
    second = plot_learning_curves(plan, records, tmp_path / "b.png")
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first.read_bytes() == second.read_bytes()
    width = int.from_bytes(first.read_bytes()[16:20], "big")
    assert width == 3 * 450  # three panels: pre-training and one per task, 4.5 in at 100 dpi
    assert plot_learning_curves(plan, {}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_the_markdown_report_embeds_the_curves_png(plan, tmp_path: Path):
    store = RunStore(tmp_path / "run")
    source = {"path": "tiny.toml", "sha256": "ab" * 32, "scale": "tiny", "overrides": []}
    store.write_manifest(plan.matrix.model_dump(mode="json"), source)
    for trial_id, record in records_of(plan).items():
        config = plan.trial(trial_id).config.model_dump(mode="json")
        store.write_record(trial_id, config, "done", metrics=record.metrics, history=record.history)
    written = write_report(plan, store, tmp_path / "out", ["md"])
    name = plan.matrix.name
    assert {p.name for p in written.paths} >= {f"{name}.md", f"{name}.curves.png"}
    text = (tmp_path / "out" / f"{name}.md").read_text()
    assert f"![Learning curves]({name}.curves.png)" in text
