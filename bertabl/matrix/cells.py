"""Which fine-tuning trials stand behind a report row's cell: what the report selects among,
and what `bertabl export` picks its model from."""

from __future__ import annotations

from bertabl.matrix.plan import FinetuneTrial, Plan, Row
from bertabl.matrix.trials import multitask_key


def cell_trials(plan: Plan, row: Row, task: str) -> list[FinetuneTrial]:
    """The fine-tuning trials behind one report cell (all grid points and restarts): those of
    the row's model, step, head and recipe on `task` (for a multi-task row's grouped tasks,
    the views of its shared trials)."""
    head = plan.matrix.spec(task).fixed_head or row.head
    recipe = plan.recipes[(row.recipe, task)]
    group = multitask_key(plan.matrix, row.multitask)
    if group is not None and task in group.tasks:
        candidates = plan.views
    else:
        candidates, group = plan.finetune, None
    return [
        t
        for t in candidates
        if (t.pretrain_id, t.head, t.pretrain_step, t.task, t.config.recipe, t.multitask)
        == (row.pretrain_id, head, row.pretrain_step, task, recipe, group)
    ]


def trial_rows(plan: Plan) -> dict[str, list[str]]:
    """The report rows each fine-tuning trial stands behind, by trial id, in row order: rows that
    share a model, step, head and recipe share their trials (Table 7's rows are one model's
    feature modes), and a multi-task trial's rows are those of its per-task views."""
    rows: dict[str, list[str]] = {}
    for row in plan.rows:
        for task in plan.matrix.finetune.tasks:
            for trial in cell_trials(plan, row, task):
                names = rows.setdefault(trial.view_of or trial.id, [])
                if row.name not in names:
                    names.append(row.name)
    return rows


def trial_words(plan: Plan) -> dict[str, str]:
    """Every trial in words, for status tables and progress lines: `Plan.describe`, a
    fine-tuning trial's led by the rows it stands behind (Table 7's seven rows fine-tune one
    model on one task over one grid: only the row tells their trials apart)."""
    rows = trial_rows(plan)
    words = {}
    for trial in [*plan.pretrain, *plan.finetune, *plan.tests]:
        what = plan.describe(trial.id)
        words[trial.id] = f"{', '.join(rows[trial.id])}: {what}" if trial.id in rows else what
    return words
