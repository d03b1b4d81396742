"""Selection, aggregation and rendering on hand-made records with hand-computed answers."""

from __future__ import annotations

import statistics

import pytest

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.report.render import ReportContext, latex_escape, render_latex, render_markdown
from bertabl.report.select import build_table, select_cell
from tests.conftest import TINY_MATRIX


def _plan(extra: dict | None = None):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["grid"]["learning_rate"] = [1e-3, 3e-3]  # 2 grid points x 2 restarts
    return build_plan(validate(raw, "tiny.toml"))


def _records(plan, scores: dict[tuple[str, float, int], float | str]) -> dict:
    """Records for the first row's syn_agree cell: (task, lr, restart) -> score or status."""
    records = {}
    for trial in plan.finetune:
        key = (trial.task, dict(trial.grid_point)["learning_rate"], trial.restart)
        if trial.pretrain_id != plan.rows[0].pretrain_id or key not in scores:
            continue
        value = scores[key]
        if isinstance(value, str):
            records[trial.id] = {"status": value, "metrics": {}}
        else:
            records[trial.id] = {"status": "done", "metrics": {"dev_accuracy": value}}
    return records


def _cell(plan, records, task="syn_agree"):
    return select_cell(plan.cell(plan.rows[0], task), records, task, "accuracy")


def test_best_grid_point_by_mean_then_its_mean_std_and_best():
    plan = _plan()
    # lr 1e-3: restarts 0.70, 0.90 -> mean 0.80; lr 3e-3: 0.78, 0.80 -> mean 0.79.
    # The best single run (0.90) is at lr 1e-3, and so is the best mean: pick 1e-3.
    records = _records(
        plan,
        {
            ("syn_agree", 1e-3, 0): 0.70,
            ("syn_agree", 1e-3, 1): 0.90,
            ("syn_agree", 3e-3, 0): 0.78,
            ("syn_agree", 3e-3, 1): 0.80,
        },
    )
    cell = _cell(plan, records)
    assert cell.grid_point["learning_rate"] == 1e-3
    assert cell.mean == pytest.approx(0.80)
    # sample std of (0.70, 0.90): sqrt(((-0.1)^2 + 0.1^2) / (2 - 1)) = sqrt(0.02) = 0.141421...
    assert cell.std == pytest.approx(0.1414213562)
    assert cell.best == pytest.approx(0.90)
    assert cell.status == "done"


def test_mean_decides_not_the_single_best_run():
    plan = _plan()
    # lr 1e-3: 0.50, 0.95 -> mean 0.725; lr 3e-3: 0.80, 0.80 -> mean 0.80 wins despite 0.95.
    records = _records(
        plan,
        {
            ("syn_agree", 1e-3, 0): 0.50,
            ("syn_agree", 1e-3, 1): 0.95,
            ("syn_agree", 3e-3, 0): 0.80,
            ("syn_agree", 3e-3, 1): 0.80,
        },
    )
    cell = _cell(plan, records)
    assert cell.grid_point["learning_rate"] == 3e-3
    assert cell.values == [0.80, 0.80]


def test_ties_go_to_the_earlier_grid_point():
    plan = _plan()
    scores = {("syn_agree", lr, r): 0.75 for lr in (1e-3, 3e-3) for r in (0, 1)}
    cell = _cell(plan, _records(plan, scores))
    assert cell.grid_point["learning_rate"] == 1e-3


def test_partial_and_missing_cells():
    plan = _plan()
    records = _records(
        plan,
        {("syn_agree", 1e-3, 0): 0.6, ("syn_agree", 1e-3, 1): "failed"},
    )
    cell = _cell(plan, records)
    assert cell.status == "partial"
    assert cell.values == [0.6] and cell.std is None
    assert cell.counts == {"done": 1, "failed": 1, "pending": 2}

    blocked = _records(plan, {("syn_chain", 1e-3, r): "blocked" for r in (0, 1)})
    assert _cell(plan, blocked, "syn_chain").status == "blocked"
    assert _cell(plan, {}, "syn_chain").status == "pending"


def test_markdown_and_latex_render_cells_and_footnotes():
    plan = _plan()
    records = _records(
        plan,
        {
            ("syn_agree", 1e-3, 0): 0.70,
            ("syn_agree", 1e-3, 1): 0.90,
            ("syn_agree", 3e-3, 0): 0.10,
            ("syn_agree", 3e-3, 1): 0.10,
        },
    )
    table = build_table(plan, records)
    ctx = ReportContext(
        title="Tiny & test",
        description="",
        source={"path": "tiny.toml", "sha256": "ab" * 32, "scale": "tiny", "overrides": []},
        data={"corpus": "synthetic", "tokenizer": "synthetic", "synthetic": {"seed": 0}},
        trial_counts={"done": 4, "pending": 10},
    )
    md = render_markdown(table, ctx)
    # 100 * mean(0.70, 0.90) = 80.0; 100 * stdev = 14.142... -> "14.1"
    assert "| MLM + NSP | 80.0 ± 14.1 | —<sup>1</sup> |" in md
    assert "| MLM only | —<sup>2</sup> | —<sup>3</sup> |" in md
    assert "<sup>1</sup> MLM + NSP / syn_chain: not run yet" in md
    tex = render_latex(table, ctx)
    assert r"MLM + NSP & 80.0 $\pm$ 14.1 & --- \\" in tex
    assert r"\caption{Tiny \& test (synthetic data)" in tex
    assert statistics.stdev([0.7, 0.9]) == pytest.approx(0.141421356)


def test_latex_escape():
    assert latex_escape(r"a_b & 50% #1 {x} ~ ^ \ $") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$"
    )
