"""`bertabl power` and the report's MDE on a run directory with kept predictions: the generic
fixture's plan, every fine-tune finished, its dev predictions planted (seeded) so that one
row differs from the baseline and the other does not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.power import Setting, planted_run
from bertabl.cli import app
from bertabl.matrix.cells import cell_trials
from bertabl.orchestrate.store import RunStore
from bertabl.report.build import predictions_of, write_report
from bertabl.report.layouts import build_report
from bertabl.report.power_plan import power_plan
from bertabl.trial.files import PREDICTIONS
from tests.conftest import REPO
from tests.report.fixtures import fixture_plan, fixture_source

SECONDS = 36.0  # each fine-tuning trial's recorded wall time


@pytest.fixture(autouse=True)
def _from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the fixture's data paths are relative to the repository


def _run_dir(tmp_path, effect=0.0):
    """The generic fixture run: MLM only vs MLM + NSP, 2 grid points x 2 restarts per cell, 300
    dev examples; MLM only is `effect` better on syn_agree and the same on syn_chain."""
    plan = fixture_plan("generic")
    store = RunStore(tmp_path / "runs" / "generic")
    store.write_manifest(plan.matrix.model_dump(mode="json"), fixture_source("generic"))
    rng = np.random.default_rng(0)
    for task in plan.matrix.finetune.tasks:
        planted = effect if task == "syn_agree" else 0.0
        base, other = (cell_trials(plan, row, task) for row in plan.rows)
        for ours, theirs in zip(other, base, strict=True):  # the same grid point and restart
            [lines_ours], [lines_theirs] = planted_run(
                Setting(examples=300, restarts=1, effect=planted), rng
            )
            for trial, lines in ((ours, lines_ours), (theirs, lines_theirs)):
                accuracy = np.mean([x["prediction"] == x["label"] for x in lines])
                store.write_record(
                    trial.id,
                    trial.config.model_dump(mode="json"),
                    "done",
                    metrics={"dev_accuracy": float(accuracy)},
                    timings={"seconds": SECONDS},
                )
                folder = store.trial_dir(trial.id) / PREDICTIONS
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "dev.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    return store


def test_the_report_shows_each_comparisons_mde_and_what_unmarked_cells_could_detect(tmp_path):
    store = _run_dir(tmp_path, effect=0.15)
    out = tmp_path / "report"
    write_report(fixture_plan("generic"), store, out, ["md", "tex"])
    md = (out / "generic.md").read_text()
    assert "| MDE (80%) |" in md
    plan = fixture_plan("generic")
    report = build_report(plan, store.records(), predictions=predictions_of(store))
    agree, chain = [d for d in report.details if d.row == "no_nsp"]
    assert agree.p_vs_baseline < 0.05 and chain.p_vs_baseline >= 0.05
    assert 0 < agree.mde < 0.15 and chain.mde > 0
    note = f"no difference detected; this design detects ≥ {100 * chain.mde:.1f} points"
    assert note in report.notes  # under the unmarked cell, not the marked one
    assert f"≥ {100 * agree.mde:.1f} points" not in "".join(report.notes)
    assert r"this design detects $\geq$" in (out / "generic.tex").read_text()


def test_power_gives_the_restarts_an_effect_needs_and_their_cost(tmp_path):
    store = _run_dir(tmp_path)
    result = power_plan(store.root, effect=3.0)
    assert [c.column for c in result.cells] == ["syn_agree (accuracy)", "syn_chain (accuracy)"]
    for cell in result.cells:
        assert cell.examples == 300 and cell.restarts == 2
        assert cell.restarts_needed is not None and cell.restarts_needed > 2
        # the new restarts of both grid points of the cell and of its baseline, 36 s each
        new = (cell.restarts_needed - 2) * 2 * 2
        assert cell.more_hours == pytest.approx(new * SECONDS / 3600)
    most = max(c.restarts_needed for c in result.cells)
    assert result.proposal.sets == [f"finetune.restarts={most}"]
    # the matrix planned again: every row x task x grid point gets the new restarts
    assert result.proposal.new_trials == 2 * 2 * 2 * (most - 2)
    assert result.proposal.hours == pytest.approx(result.proposal.new_trials * SECONDS / 3600)


def test_power_command_prints_a_plain_table_and_the_set_line(tmp_path):
    store = _run_dir(tmp_path)
    result = CliRunner().invoke(app, ["power", str(store.root), "--effect", "3", "--restarts", "8"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split("  ")[0] == "Row" and "MDE at 8 restarts" in lines[0]
    assert "Power at 3, 8 restarts" in lines[0]
    assert "bertabl plan tests/fixtures/report/generic.toml --set finetune.restarts=8" in (
        result.output
    )
    assert "\x1b[" not in result.output  # piped: no styles


def test_power_needs_a_finished_run(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["power", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "not a bertabl run directory" in missing.output
    assert "Traceback" not in missing.output
    store = RunStore(tmp_path / "runs" / "generic")
    store.write_manifest(fixture_plan("generic").matrix.model_dump(mode="json"), {"path": "x"})
    unfinished = runner.invoke(app, ["power", str(store.root)])
    assert unfinished.exit_code == 2
    assert "no finished fine-tuning trial yet" in unfinished.output
    assert len(unfinished.output.strip().splitlines()) == 1
    effect = runner.invoke(app, ["power", str(store.root), "--effect", "0"])
    assert effect.exit_code == 2 and "--effect 0: a difference in points" in effect.output
