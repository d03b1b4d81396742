"""Fine-tuning trials: pre-training trial x task x grid point x restart, for every distinct
(model, step, head, recipe) the rows ask for; multi-task rows add one shared trial per grid point
and restart, and a view of it per task (what their report cells select from)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bertabl.errors import DataError, MatrixError
from bertabl.matrix.checks import check_head, check_recipe
from bertabl.matrix.compute import training_flops
from bertabl.matrix.rows import RecipeRow, Row
from bertabl.matrix.schema import FinetuneSection, Matrix, TaskData
from bertabl.tasks import sources
from bertabl.trial.data import DataRef
from bertabl.trial.finetune import (
    FinetuneConfig,
    FinetuneTrialConfig,
    MultitaskKey,
    MultitaskTrialConfig,
    Recipe,
)
from bertabl.trial.pretrain import PretrainTrialConfig

GridPoint = tuple[tuple[str, Any], ...]  # (("batch_size", 32), ("learning_rate", ...), ...)


@dataclass(frozen=True)
class PretrainTrial:
    id: str
    config: PretrainTrialConfig
    parameters: int

    @property
    def tokens(self) -> int:
        return self.config.pretrain.tokens

    @property
    def flops(self) -> float:
        return training_flops(self.parameters, self.tokens)


@dataclass(frozen=True)
class FinetuneTrial:
    id: str
    config: FinetuneConfig
    grid_point: GridPoint
    parameters: int
    tokens: int  # upper bound: every example padded to max_seq_len

    @property
    def pretrain_id(self) -> str:
        return self.config.pretrain_id

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def restart(self) -> int:
        return self.config.restart

    @property
    def head(self) -> tuple[str, int, str | None]:
        return self.config.head_key

    @property
    def pretrain_step(self) -> int | None:
        """The pre-training step of the model it starts from (None = the final model)."""
        return self.config.pretrain_step

    @property
    def recipe(self) -> dict[str, Any]:
        """Its fine-tuning recipe keys that differ from BERT's defaults ({} = BERT's recipe)."""
        return self.config.recipe.changes()

    @property
    def multitask(self) -> MultitaskKey | None:
        """The group of a multi-task trial (or of a view of one); else None."""
        return getattr(self.config, "multitask", None)

    @property
    def view_of(self) -> str | None:
        """For one task's results of a multi-task trial: that trial's id."""
        return getattr(self.config, "view_of", None)

    @property
    def flops(self) -> float:
        return training_flops(self.parameters, self.tokens)


def finetune_trials(
    matrix: Matrix,
    rows: list[Row],
    pretrain: dict[str, PretrainTrial],
    recipes: dict[tuple[str, str], Recipe],
    origin: str,
) -> tuple[list[FinetuneTrial], list[FinetuneTrial]]:
    """(the trials to run, the per-task views of multi-task trials), in matrix order."""
    ft = matrix.finetune
    data = {task: task_data(matrix, task, origin) for task in ft.tasks}
    smallest_batch = min(ft.grid.batch_size)
    trials: dict[str, FinetuneTrial] = {}
    views: list[FinetuneTrial] = []

    def add(config: FinetuneConfig, point: GridPoint, parameters: int, examples: int) -> bool:
        if config.id in trials:  # e.g. rows differing only in a head the task fixes
            return False
        tokens = config.epochs * examples * ft.max_seq_len
        trials[config.id] = FinetuneTrial(config.id, config, point, parameters, tokens)
        return True

    # Rows sharing a pre-training trial, step, head and recipe share their fine-tuning trials.
    # (Multi-task rows add none: their other tasks' cells are the single-task trials.)
    for pt_id, step, row_head, recipe_name in dict.fromkeys(
        (r.pretrain_id, r.pretrain_step, r.head, r.recipe) for r in rows
    ):
        pt = pretrain[pt_id]
        for task in ft.tasks:
            spec = matrix.spec(task)
            head = spec.fixed_head or row_head
            recipe = recipes[(recipe_name, task)]
            check_recipe(
                recipe, head[0], pt.config.pretrain, task, recipe_name, smallest_batch, origin
            )
            check_head(head[0], spec, origin)
            ref, examples = data[task]
            for point, common in grid_settings(ft, pt_id, step, head, recipe):
                config = FinetuneTrialConfig(**common, task=task, task_data=ref)
                add(config, point, pt.parameters, examples)

    for pt_id, step, (head, bilstm_hidden, _), recipe_name, name in dict.fromkeys(
        (r.pretrain_id, r.pretrain_step, r.head, r.recipe, r.multitask) for r in rows if r.multitask
    ):
        pt = pretrain[pt_id]
        group = multitask_key(matrix, name)
        tasks = group.tasks
        recipe = recipes[(recipe_name, tasks[0])]
        if any(recipes[(recipe_name, t)] != recipe for t in tasks):
            raise MatrixError(
                f"{origin}: finetune.multitask ({name}): its tasks {', '.join(tasks)} have "
                "different recipes (finetune.task_recipe); a shared encoder trains with one"
            )
        check_recipe(
            recipe, head, pt.config.pretrain, tasks[0], recipe_name, smallest_batch, origin
        )
        for task in tasks:
            check_head(head, matrix.spec(task), origin)
        examples = sum(data[t][1] for t in tasks)
        for point, common in grid_settings(ft, pt_id, step, (head, bilstm_hidden, None), recipe):
            config = MultitaskTrialConfig(
                **common,
                task="+".join(tasks),
                task_data={t: data[t][0] for t in tasks},
                multitask=group,
            )
            if add(config, point, pt.parameters, examples):
                for task in tasks:
                    view = config.view(task)
                    views.append(FinetuneTrial(view.id, view, point, 0, 0))
    return list(trials.values()), views


def grid_settings(
    ft: FinetuneSection,
    pretrain_id: str,
    step: int | None,
    head: tuple[str, int, str | None],
    recipe: Recipe,
) -> Iterator[tuple[GridPoint, dict[str, Any]]]:
    """(grid point, the settings every fine-tuning config of it takes) for each grid point x
    restart, in matrix order."""
    grid = ft.grid
    for batch, lr, epochs in itertools.product(grid.batch_size, grid.learning_rate, grid.epochs):
        point = (("batch_size", batch), ("learning_rate", lr), ("epochs", epochs))
        for restart in range(ft.restarts):
            yield (
                point,
                {
                    "pretrain_id": pretrain_id,
                    "pretrain_step": step,
                    "batch_size": batch,
                    "learning_rate": lr,
                    "epochs": epochs,
                    "restart": restart,
                    "seed": ft.seed + restart,
                    "max_seq_len": ft.max_seq_len,
                    "group_by_length": ft.group_by_length,
                    "warmup_fraction": ft.warmup_fraction,
                    "weight_decay": ft.weight_decay,
                    "eval_batch_size": ft.eval_batch_size,
                    "head": head[0],
                    "bilstm_hidden": head[1],
                    "features": head[2],
                    "recipe": recipe,
                },
            )


def multitask_key(matrix: Matrix, name: str) -> MultitaskKey | None:
    """What identifies multi-task group `name` in trial configs ("" = none)."""
    for group in matrix.finetune.multitask:
        if group.name == name:
            return MultitaskKey(tasks=list(group.tasks), temperature=float(group.temperature))
    return None


def resolved_recipe(matrix: Matrix, recipe_row: RecipeRow | None, task: str, origin: str) -> Recipe:
    """The recipe of `task` in `recipe_row` (None = none): finetune.recipe, then
    finetune.task_recipe.<task>, then the row's keys."""
    ft = matrix.finetune
    merged = ft.recipe.model_dump(mode="json")
    where = "finetune.recipe"
    if task in ft.task_recipe:
        merged |= ft.task_recipe[task].model_dump(mode="json", exclude_none=True)
        where = f"finetune.task_recipe.{task}"
    if recipe_row is not None:
        merged |= recipe_row.keys
        where = f"{recipe_row.where}, task {task}"
    try:
        recipe = Recipe.model_validate(merged)
    except ValidationError as err:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise MatrixError(f"{origin}: {where}: {message}") from None
    if not matrix.spec(task).sentence_level:  # pooling heads are for sequence classification
        recipe = recipe.model_copy(update={"pooling": Recipe().pooling})
    return recipe


def task_data(matrix: Matrix, task: str, origin: str) -> tuple[DataRef, int]:
    """(the task's data for its trials, its number of training examples); data errors name the
    matrix key to fix."""
    spec = matrix.spec(task)
    settings = matrix.data.tasks.get(task, TaskData())
    try:
        ref = sources.task_data(spec, settings, matrix.data)
        return ref, sources.train_examples(spec, ref)
    except DataError as err:
        if spec.source == "custom":
            key = f"data.custom_tasks.{task}"
        elif settings.path:
            key = f"data.tasks.{task}.path"
        else:
            key = f"data.{sources.FOLDER_KEY[spec.source]}"
        raise DataError(f"{origin}: {key} (task {task}): {err}") from None
