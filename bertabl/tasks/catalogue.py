"""The tasks a matrix can name: the built-in ones plus those its `data.custom_tasks` define.

A catalogue is built from a validated matrix and handed to whoever needs it (plan, report,
`bertabl tasks`); nothing is registered globally, so validating one matrix never changes what
another means. A trial finds its task's spec from its own config (`spec_of`), because a Ray
worker has not seen the matrix that defined a custom task.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from bertabl.tasks.builtin import BUILT_IN
from bertabl.tasks.custom import CustomTask, custom_spec
from bertabl.tasks.spec import TaskSpec
from bertabl.trial.data import DataRef


class TaskCatalogue(Mapping[str, TaskSpec]):
    """Task name -> TaskSpec: the built-in tasks and one matrix's custom tasks."""

    def __init__(self, custom: Mapping[str, CustomTask] | None = None):
        clash = sorted(set(custom or {}) & set(BUILT_IN))
        if clash:
            raise ValueError(f"'{clash[0]}' is a built-in task; give your task another name")
        self._specs = dict(BUILT_IN)
        for name, task in (custom or {}).items():
            self._specs[name] = custom_spec(name, task.definition())

    def __getitem__(self, name: str) -> TaskSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def metric_for(self, task: str, selection: Mapping[str, str]) -> str:
        """The dev metric that selects the grid point for `task` (finetune.selection_metric)."""
        return selection.get(task, self[task].main_metric)


def spec_of(task: str, data: DataRef) -> TaskSpec:
    """The spec of a trial's task, wherever the trial runs: a custom task's definition travels
    in its data identity."""
    if data.identity["source"] == "custom":
        return custom_spec(task, data.identity["definition"])
    return BUILT_IN[task]
