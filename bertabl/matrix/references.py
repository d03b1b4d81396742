"""Every cross-reference of a matrix, checked in one place before anything runs.

A section validates on its own (types, ranges, its own consistency); what one section says
about another is checked here, once the whole matrix has validated: task names against the
task catalogue (built-in + `data.custom_tasks`), per-task settings against `finetune.tasks`,
metrics against each task's metrics, and `report.paper_rows` against the variants and the
paper table the matrix will be reported as. `bertabl plan`, `run` and `report` all validate
through here (matrix/load.py calls `first_problem` once the sections have validated), so a
mistake never surfaces after the compute. The schema itself does not know these checks: they
read the whole Matrix, so they depend on it, not it on them.
"""

from __future__ import annotations

from bertabl.matrix.schema import Matrix
from bertabl.paper.tables import infer_layout, paper_rows_problem
from bertabl.tasks.spec import SENTENCE_FAMILIES


def first_problem(matrix: Matrix) -> str | None:
    """The first broken cross-reference as one line, `key.path: what is wrong; what to do`."""
    for check in (_task_names, _per_task_settings, _multitask_groups, _paper_rows):
        problem = check(matrix)
        if problem:
            return problem
    return None


def _unknown(matrix: Matrix, name: str) -> str:
    return f"unknown task '{name}'; known tasks: {', '.join(sorted(matrix.catalogue))}"


def _task_names(matrix: Matrix) -> str | None:
    for index, name in enumerate(matrix.finetune.tasks):
        if name not in matrix.catalogue:
            return f"finetune.tasks[{index}]: {_unknown(matrix, name)}"
    for name in matrix.data.tasks:
        if name not in matrix.catalogue:
            return f"data.tasks.{name}: {_unknown(matrix, name)}"
    return None


def _per_task_settings(matrix: Matrix) -> str | None:
    ft = matrix.finetune
    for task, settings in ft.task_settings.items():
        where = f"finetune.task_settings.{task}"
        if task not in ft.tasks:
            return f"{where}: task_settings names task '{task}', which is not in tasks {ft.tasks}"
        family = matrix.catalogue[task].family
        if settings.doc_stride is not None and family != "span_qa":
            return f"{where}.doc_stride: only span QA tasks cut windows; {task} is {family}"
        for key in ("document_context", "tag_scheme"):
            if getattr(settings, key) is not None and family != "tagging":
                return f"{where}.{key}: only tagging tasks take it; {task} is {family}"
    for task, metric in ft.selection_metric.items():
        if task not in ft.tasks:
            return (
                f"finetune.selection_metric: selection_metric names task '{task}', which is not "
                f"in tasks {ft.tasks}"
            )
        allowed = matrix.catalogue[task].metrics
        if metric not in allowed:
            return (
                f"finetune.selection_metric.{task}: selection_metric.{task} = '{metric}' is not "
                f"a metric of {task}; allowed: {', '.join(allowed)}"
            )
    return None


def _multitask_groups(matrix: Matrix) -> str | None:
    ft = matrix.finetune
    for index, group in enumerate(ft.multitask):
        where = f"finetune.multitask[{index}].tasks"
        for name in group.tasks:
            if name not in matrix.catalogue:
                return f"{where}: {_unknown(matrix, name)}"
        wrong = [t for t in group.tasks if matrix.catalogue[t].family not in SENTENCE_FAMILIES]
        if wrong:
            return (
                f"{where}: multi-task groups take sentence(-pair) classification/regression "
                f"tasks; {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not"
            )
        missing = [t for t in group.tasks if t not in ft.tasks]
        if missing:
            return (
                f"{where}: multitask group {group.name}: {missing} not in finetune.tasks {ft.tasks}"
            )
    return None


def _paper_rows(matrix: Matrix) -> str | None:
    variants = [v.name for v in matrix.pretrain.variants]
    layout = infer_layout(matrix.report.layout, matrix.name, variants, matrix.finetune.tasks)
    return paper_rows_problem(matrix.report.paper_rows, variants, layout)
