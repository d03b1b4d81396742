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
from bertabl.matrix.checks import check_encoder, check_head, check_model, check_recipe
from bertabl.matrix.compute import training_flops
from bertabl.matrix.finetune_section import FinetuneSection, TaskProtocol
from bertabl.matrix.models import ModelSource
from bertabl.matrix.rows import RecipeRow, Row
from bertabl.matrix.schema import Matrix, TaskData
from bertabl.pretrain.objectives import OBJECTIVES, PretrainObjective
from bertabl.tasks import sources
from bertabl.trial.data import DataRef
from bertabl.trial.finetune import (
    DEFAULT_TAG_SCHEME,
    FinetuneConfig,
    FinetuneTrialConfig,
    GridPoint,
    MultitaskKey,
    MultitaskTrialConfig,
    Recipe,
    TestTrialConfig,
)
from bertabl.trial.pretrain import PretrainTrialConfig


@dataclass(frozen=True)
class PretrainTrial:
    id: str
    config: PretrainTrialConfig
    parameters: int

    @property
    def tokens(self) -> int:
        return self.config.pretrain.tokens

    @property
    def layers(self) -> int:
        return self.config.pretrain.model.layers

    @property
    def objective(self) -> PretrainObjective:
        return OBJECTIVES[self.config.pretrain.objective]

    @property
    def causal(self) -> bool:
        return self.objective.causal

    @property
    def checkpoint(self) -> None:
        return None  # pre-trained here

    @property
    def flops(self) -> float:
        return training_flops(self.parameters, self.tokens)


@dataclass(frozen=True)
class TestTrial:
    """A cell's test-split scoring (see TestTrialConfig): runs after the cell's fine-tunes."""

    id: str
    config: TestTrialConfig

    @property
    def depends_on(self) -> list[str]:
        return self.config.trials


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
    models: dict[str, ModelSource],
    recipes: dict[tuple[str, str], Recipe],
    origin: str,
    warnings: list[str] | None = None,
) -> tuple[list[FinetuneTrial], list[FinetuneTrial], list[TestTrial], list[tuple[str, list[str]]]]:
    """(the trials to run, the per-task views of multi-task trials, the test-split scorings of
    the cells whose task has test splits, every single-task cell as (task, its trials)), in
    matrix order. `models` are where rows' models
    come from: pre-training trials, or checkpoints (matrix/models.py)."""
    ft = matrix.finetune
    data = {task: task_data(matrix, task, origin, warnings) for task in ft.tasks}
    trials: dict[str, FinetuneTrial] = {}
    views: list[FinetuneTrial] = []
    tests: dict[str, TestTrial] = {}
    cells: dict[tuple[str, tuple[str, ...]], None] = {}  # (task, its trials), in matrix order

    def add(config: FinetuneConfig, point: GridPoint, parameters: int, examples: int) -> bool:
        if config.id in trials:  # e.g. rows differing only in a head the task fixes
            return False
        tokens = config.epochs * examples * config.max_seq_len
        trials[config.id] = FinetuneTrial(config.id, config, point, parameters, tokens)
        return True

    # Rows sharing a model, step, head and recipe share their fine-tuning trials.
    # (Multi-task rows add none: their other tasks' cells are the single-task trials.)
    for model_id, step, row_head, recipe_name in dict.fromkeys(
        (r.pretrain_id, r.pretrain_step, r.head, r.recipe) for r in rows
    ):
        model = models[model_id]
        for task in ft.tasks:
            spec = matrix.spec(task)
            head = spec.fixed_head or row_head
            recipe = recipes[(recipe_name, task)]
            protocol = ft.protocol(task)
            smallest = min(protocol.grid.batch_size)
            check_recipe(recipe, head[0], model, task, recipe_name, smallest, origin)
            check_head(head[0], spec, origin)
            check_model(model, spec, origin)
            check_encoder(model, head[0], recipe, origin)
            ref, examples = data[task]
            cell = []
            scheme = None
            if spec.family == "tagging":
                scheme = protocol.tag_scheme or DEFAULT_TAG_SCHEME
            grouped = ft.groups_by_length(spec.family)
            for point, common in grid_settings(ft, protocol, model, step, head, recipe, grouped):
                config = FinetuneTrialConfig(**common, task=task, task_data=ref, tag_scheme=scheme)
                add(config, point, model.parameters, examples)
                cell.append(config.id)
            cells.setdefault((task, tuple(cell)), None)
            if splits := sources.test_splits(ref):
                test = TestTrialConfig(
                    task=task,
                    task_data=ref,
                    metric=matrix.metric_for(task),
                    trials=cell,
                    splits=list(splits),
                )
                tests.setdefault(test.id, TestTrial(test.id, test))

    for model_id, step, (head, bilstm_hidden, _), recipe_name, name in dict.fromkeys(
        (r.pretrain_id, r.pretrain_step, r.head, r.recipe, r.multitask) for r in rows if r.multitask
    ):
        model = models[model_id]
        group = multitask_key(matrix, name)
        tasks = group.tasks
        recipe, protocol = recipes[(recipe_name, tasks[0])], ft.protocol(tasks[0])
        for task in tasks:
            if recipes[(recipe_name, task)] != recipe or ft.protocol(task) != protocol:
                raise MatrixError(
                    f"{origin}: finetune.multitask ({name}): its tasks {', '.join(tasks)} have "
                    "different recipes or settings (finetune.task_settings); a shared encoder "
                    "trains with one"
                )
            check_head(head, matrix.spec(task), origin)
            check_model(model, matrix.spec(task), origin)
        smallest = min(protocol.grid.batch_size)
        check_recipe(recipe, head, model, tasks[0], recipe_name, smallest, origin)
        check_encoder(model, head, recipe, origin)
        examples = sum(data[t][1] for t in tasks)
        key = (head, bilstm_hidden, None)
        grouped = ft.groups_by_length(matrix.spec(tasks[0]).family)  # sentence families alike
        for point, common in grid_settings(ft, protocol, model, step, key, recipe, grouped):
            config = MultitaskTrialConfig(
                **common,
                task="+".join(tasks),
                task_data={t: data[t][0] for t in tasks},
                multitask=group,
            )
            if add(config, point, model.parameters, examples):
                for task in tasks:
                    view = config.view(task)
                    views.append(FinetuneTrial(view.id, view, point, 0, 0))
    return list(trials.values()), views, list(tests.values()), [(t, list(c)) for t, c in cells]


def grid_settings(
    ft: FinetuneSection,
    protocol: TaskProtocol,
    model: ModelSource,
    step: int | None,
    head: tuple[str, int, str | None],
    recipe: Recipe,
    grouped: bool,
) -> Iterator[tuple[GridPoint, dict[str, Any]]]:
    """(grid point, the settings every fine-tuning config of it takes) for each grid point x
    restart of the task's protocol, in matrix order; `grouped`: length-grouped batches."""
    grid = protocol.grid
    for batch, lr, epochs in itertools.product(grid.batch_size, grid.learning_rate, grid.epochs):
        point = (("batch_size", batch), ("learning_rate", lr), ("epochs", epochs))
        for restart in range(protocol.restarts):
            yield (
                point,
                {
                    "pretrain_id": model.id,
                    "pretrain_step": step,
                    "checkpoint": model.checkpoint,
                    "batch_size": batch,
                    "learning_rate": lr,
                    "epochs": epochs,
                    "restart": restart,
                    "seed": ft.seed + restart,
                    "max_seq_len": protocol.max_seq_len,
                    "doc_stride": protocol.doc_stride,
                    "document_context": protocol.document_context,
                    "group_by_length": grouped,
                    "warmup_fraction": ft.warmup_fraction,
                    "weight_decay": ft.weight_decay,
                    "eval_batch_size": protocol.eval_batch_size,
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
    finetune.task_settings.<task>.recipe, then the row's keys."""
    ft = matrix.finetune
    merged = ft.recipe.model_dump(mode="json")
    where = "finetune.recipe"
    if task in ft.task_settings:
        merged |= ft.task_settings[task].recipe.model_dump(mode="json", exclude_none=True)
        where = f"finetune.task_settings.{task}.recipe"
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


def task_data(
    matrix: Matrix, task: str, origin: str, warnings: list[str] | None = None
) -> tuple[DataRef, int]:
    """(the task's data for its trials, its number of training examples); data errors name the
    matrix key to fix. With `warnings` (a dry run), missing data is a warning there instead, and
    the task's trials get a stand-in identity (their ids are provisional) and the standard
    split's size."""
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
        message = f"{origin}: {key} (task {task}): {err}"
        if warnings is None:
            raise DataError(message) from None
        warnings.append(message)
        slice_size = settings.max_train_examples
        stand_in = {"source": "missing", "task": task, "max_train_examples": slice_size}
        examples = min(slice_size, spec.train_examples) if slice_size else spec.train_examples
        return DataRef(identity=stand_in, location={}), examples
