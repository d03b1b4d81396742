"""Selection, aggregation and rendering on hand-made records with hand-computed answers."""

from __future__ import annotations

import pytest

from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.record import Record
from bertabl.report.render import latex_escape
from bertabl.report.select import select_cell
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
            records[trial.id] = _record(trial, value, {})
        else:
            records[trial.id] = _record(trial, "done", {"dev_accuracy": value})
    return records


def _record(trial, status: str, metrics: dict) -> Record:
    return Record(id=trial.id, stage="finetune", status=status, config={}, metrics=metrics)


def _cell(plan, records, task="syn_agree"):
    return select_cell(cell_trials(plan, plan.rows[0], task), records, task, "accuracy")


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


def test_latex_escape():
    assert latex_escape(r"a_b & 50% #1 {x} ~ ^ \ $") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$"
    )


def test_median_and_failed_and_diverged_restarts_at_the_selected_point():
    plan = _plan()
    records = _records(
        plan,
        {
            ("syn_agree", 1e-3, 0): 0.90,
            ("syn_agree", 1e-3, 1): "failed",
            ("syn_agree", 3e-3, 0): 0.60,
            ("syn_agree", 3e-3, 1): float("nan"),
        },
    )
    cell = _cell(plan, records)
    # lr 1e-3: finite mean 0.90 (its failed restart is counted, not averaged) beats 0.60.
    assert cell.grid_point["learning_rate"] == 1e-3
    assert (cell.values, cell.failed, cell.diverged) == ([0.90], 1, 0)
    # The NaN restart of lr 3e-3 is diverged there: it is left out, not counted as zero.
    other = _records(plan, {("syn_agree", 3e-3, 0): 0.5, ("syn_agree", 3e-3, 1): float("nan")})
    cell = _cell(plan, other)
    assert (cell.values, cell.diverged, cell.restarts) == ([0.5], 1, [0])
    odd = select_cell(
        cell_trials(plan, plan.rows[0], "syn_agree"),
        _records(plan, {("syn_agree", 1e-3, 0): 0.5, ("syn_agree", 1e-3, 1): 0.9}),
        "syn_agree",
        "accuracy",
    )
    assert odd.median == pytest.approx(0.7)  # median of two = their mean


def test_test_split_scores_at_the_grid_point_chosen_on_dev():
    plan = _plan()
    records = _records(
        plan,
        {
            ("syn_agree", 1e-3, 0): 0.70,
            ("syn_agree", 1e-3, 1): 0.72,
            ("syn_agree", 3e-3, 0): 0.60,
            ("syn_agree", 3e-3, 1): 0.60,
        },
    )
    # Test scores favour lr 3e-3, but selection happens on dev only: lr 1e-3's test scores.
    for trial_id, record in records.items():
        lr = dict(plan.trial(trial_id).grid_point)["learning_rate"]
        record.metrics["test_accuracy"] = 0.50 if lr == 1e-3 else 0.99
    trials = cell_trials(plan, plan.rows[0], "syn_agree")
    cell = select_cell(trials, records, "syn_agree", "accuracy", split="test")
    assert cell.grid_point["learning_rate"] == 1e-3 and cell.values == [0.50, 0.50]
    for record in records.values():
        del record.metrics["test_accuracy"]
    assert select_cell(trials, records, "syn_agree", "accuracy", "test").status == "no_split"


def test_paper_layout_adds_columns_for_tasks_the_paper_lacks():
    # e.g. table5.toml at tiny scale fine-tunes RTE as a stand-in for the NLI tasks
    from bertabl.matrix.presets import deep_merge
    from bertabl.report.layouts import build_report
    from tests.report.fixtures import FIXTURES

    common = tomllib.loads((FIXTURES / "common.toml").read_text())
    raw = deep_merge(common, tomllib.loads((FIXTURES / "table5.toml").read_text()))
    raw["finetune"]["tasks"] = ["mrpc", "syn_agree"]
    plan = build_plan(validate(raw, "table5.toml"))
    report = build_report(plan, {}, layout="table5")
    header = report.tables[0].header
    assert header[1:5] == ["MNLI-m", "QNLI", "MRPC", "SST-2"]
    assert header[-1] == "syn_agree (accuracy; not in the paper)"
    paper_line = next(line for line in report.tables[0].lines if line.source == "paper")
    last = paper_line.cells[-1]
    assert last.value is None and any("prints no value" in report.notes[n - 1] for n in last.notes)


def test_a_test_score_is_the_best_on_dev_restarts_not_the_best_test():
    plan = _plan()
    records = _records(plan, {("syn_agree", 1e-3, 0): 0.70, ("syn_agree", 1e-3, 1): 0.90})
    trials = {t.restart: t for t in cell_trials(plan, plan.rows[0], "syn_agree")
              if dict(t.grid_point)["learning_rate"] == 1e-3}  # fmt: skip
    records[trials[0].id].metrics["test_accuracy"] = 0.88  # the better test score...
    records[trials[1].id].metrics["test_accuracy"] = 0.60  # ...is not the best on dev
    cell = select_cell(
        cell_trials(plan, plan.rows[0], "syn_agree"), records, "syn_agree", "accuracy", "test"
    )
    assert cell.best == pytest.approx(0.60) and cell.best_trial == trials[1].id
    assert cell.headline("best") == pytest.approx(0.60)
    assert cell.headline("mean") == pytest.approx(0.74)  # (0.88 + 0.60) / 2


def test_report_restarts_best_headlines_the_best_restart_on_dev():
    from bertabl.report.layouts import build_report

    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["grid"]["learning_rate"] = [1e-3, 3e-3]
    raw["report"] = {"restarts": "best"}
    plan = build_plan(validate(raw, "tiny.toml"))
    records = _records(plan, {("syn_agree", 1e-3, 0): 0.70, ("syn_agree", 1e-3, 1): 0.90})
    report = build_report(plan, records)
    row = report.tables[0].lines[0]
    assert row.cells[0].value == pytest.approx(90.0) and row.cells[0].std is None
    assert "best on dev" in report.rules[0]
    detail = report.details[0]
    assert (detail.mean, detail.best) == (pytest.approx(0.80), pytest.approx(0.90))


def test_a_stalled_restart_is_counted_beside_its_cell_and_kept_in_the_mean():
    from bertabl.report.layouts import build_report
    from bertabl.report.render import shown_md

    plan = _plan()
    records = _records(plan, {("syn_agree", 1e-3, 0): 0.5, ("syn_agree", 1e-3, 1): 1.0})
    trials = {t.restart: t.id for t in cell_trials(plan, plan.rows[0], "syn_agree")
              if dict(t.grid_point)["learning_rate"] == 1e-3}  # fmt: skip
    gold = ["0", "1"] * 100
    answers = {trials[0]: ["1"] * 200, trials[1]: gold}  # one label everywhere; all right

    def predictions(trial: str, split: str):
        assert split == "dev"  # stalling is judged on dev
        return [{"index": i, "prediction": p, "label": g}
                for i, (p, g) in enumerate(zip(answers[trial], gold, strict=True))]  # fmt: skip

    report = build_report(plan, records, predictions=predictions)
    cell = report.tables[0].lines[0].cells[0]
    assert cell.stalled == 1 and cell.value == pytest.approx(75.0)  # (50 + 100) / 2
    assert "1 stalled" in shown_md(cell)
    assert report.details[0].stalled == 1
    assert build_report(plan, records).details[0].stalled is None  # no predictions: unknown
