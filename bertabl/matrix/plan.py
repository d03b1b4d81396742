"""Expansion: Matrix -> Plan (pre-training trials, fine-tuning trials, report rows).

Pre-training trials are the resolved configs of (variants x axes), deduplicated by id. Fine-tuning
trials are pre-training trial x task x grid point x restart, each depending on one pre-training
trial. Recipe rows (finetune.recipe_variants x finetune.recipe_axes) cross the pre-training rows;
a multi-task group adds rows whose grouped tasks share one trial per grid point and restart (its
per-task results are `Plan.views`). A trial id is a short hash of the trial's fully resolved
config in canonical JSON, so it is the same across runs, machines and key order in the TOML, and
changes with any value that matters.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from bertabl.data.corpus import corpus_data
from bertabl.data.tasks import TASKS, task_data, train_examples
from bertabl.data.tokenizer import vocab_size
from bertabl.errors import DataError, MatrixError, UserError
from bertabl.matrix.compute import bert_parameters, training_flops
from bertabl.matrix.load import format_key_path, format_validation_error, split_key_path
from bertabl.matrix.presets import deep_merge
from bertabl.matrix.schema import (
    FinetuneSection,
    Matrix,
    PretrainConfig,
    Recipe,
    Variant,
    seq_len_phases,
)

# Bump only when the meaning of a trial config changes, so old results are never mistaken for new.
TRIAL_SCHEMA = 1


def trial_id(prefix: str, config: dict[str, Any]) -> str:
    """`prefix-` + 8 hex digits of the SHA-256 of the config's canonical JSON.

    Keys named "location" (where data files live) are left out: content hashes identify data.
    """
    canonical = json.dumps(
        {"trial_schema": TRIAL_SCHEMA, **_identity(config)}, sort_keys=True, separators=(",", ":")
    )
    return f"{prefix}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def _identity(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _identity(v) for k, v in value.items() if k != "location"}
    if isinstance(value, list):
        return [_identity(v) for v in value]
    return value


@dataclass(frozen=True)
class PretrainTrial:
    id: str
    config: dict[str, Any]
    parameters: int
    tokens: int

    @property
    def flops(self) -> float:
        return training_flops(self.parameters, self.tokens)


@dataclass(frozen=True)
class FinetuneTrial:
    id: str
    pretrain_id: str
    task: str
    grid_point: tuple[tuple[str, Any], ...]  # (("batch_size", 32), ("learning_rate", ...), ...)
    restart: int
    config: dict[str, Any]
    parameters: int
    tokens: int  # upper bound: every example padded to max_seq_len

    @property
    def head(self) -> tuple[str, int, str | None]:
        return self.config["head"], self.config["bilstm_hidden"], self.config["features"]

    @property
    def pretrain_step(self) -> int | None:
        """The pre-training step of the model it starts from (None = the final model)."""
        return self.config["pretrain_step"]

    @property
    def recipe(self) -> dict[str, Any]:
        """Its fine-tuning recipe keys that differ from BERT's defaults ({} = BERT's recipe)."""
        return self.config.get("recipe", {})

    @property
    def multitask(self) -> dict[str, Any] | None:
        """{"tasks", "temperature"} of a multi-task trial (or of a view of one); else None."""
        return self.config.get("multitask")

    @property
    def view_of(self) -> str | None:
        """For one task's results of a multi-task trial: that trial's id."""
        return self.config.get("view_of")

    @property
    def flops(self) -> float:
        return training_flops(self.parameters, self.tokens)


@dataclass(frozen=True)
class Row:
    """One report row: a named pre-training variant, with a fine-tuning recipe (recipe rows
    cross the pre-training rows) and, for multi-task rows, a group of tasks that share one
    encoder."""

    name: str
    label: str
    pretrain_id: str
    settings: tuple[tuple[str, Any], ...]  # the overrides that define it, for the report
    head: tuple[str, int, str | None] = ("linear", 0, None)  # head, BiLSTM size, feature mode
    pretrain_step: int | None = None  # fine-tune from the model after this step; None = final
    recipe: str = ""  # its RecipeRow's name; "" = finetune.recipe itself
    multitask: str = ""  # the finetune.multitask group whose tasks share one encoder; "" = none


@dataclass
class Plan:
    matrix: Matrix
    rows: list[Row]
    pretrain: list[PretrainTrial]
    finetune: list[FinetuneTrial]
    # (recipe variant name, task) -> the recipe keys its trials set (see FinetuneTrial.recipe)
    recipes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Per-task results of multi-task trials: not run themselves (their shared trial writes
    # their records), but what report cells of multi-task rows select from.
    views: list[FinetuneTrial] = field(default_factory=list)
    _by_id: dict[str, PretrainTrial | FinetuneTrial] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {t.id: t for t in [*self.pretrain, *self.finetune, *self.views]}

    def trial(self, trial_id: str) -> PretrainTrial | FinetuneTrial:
        return self._by_id[trial_id]

    def describe(self, trial_id: str) -> str:
        """A trial in words: its rows (pre-training) or task, grid point and restart."""
        trial = self.trial(trial_id)
        if isinstance(trial, FinetuneTrial):
            point = " ".join(f"{k}={v:g}" for k, v in trial.grid_point)
            return f"{trial.task} {point} restart={trial.restart}"
        return ", ".join(r.name for r in self.rows if r.pretrain_id == trial_id)

    def cell(self, row: Row, task: str) -> list[FinetuneTrial]:
        """The fine-tuning trials behind one report cell (all grid points and restarts)."""
        head = TASKS[task].fixed_head or row.head
        recipe = self.recipes.get((row.recipe, task), {})
        group = multitask_key(self.matrix, row.multitask)
        if group is not None and task in group["tasks"]:
            candidates = self.views
        else:
            candidates, group = self.finetune, None
        return [
            t
            for t in candidates
            if (t.pretrain_id, t.head, t.pretrain_step, t.task, t.recipe, t.multitask)
            == (row.pretrain_id, head, row.pretrain_step, task, recipe, group)
        ]

    def intermediate_steps(self) -> dict[str, list[int]]:
        """Pre-training trial id -> the steps whose models fine-tuning trials start from."""
        steps: dict[str, set[int]] = {}
        for trial in self.finetune:
            if trial.pretrain_step is not None:
                steps.setdefault(trial.pretrain_id, set()).add(trial.pretrain_step)
        return {k: sorted(v) for k, v in steps.items()}

    @property
    def total_flops(self) -> float:
        return sum(t.flops for t in [*self.pretrain, *self.finetune])


def build_plan(matrix: Matrix, origin: str = "matrix") -> Plan:
    """Expand `matrix` into trials; invalid combinations raise MatrixError naming their key."""
    data = matrix.data.model_dump(mode="json")
    try:
        data_identity = corpus_data(data)
        vocab = vocab_size(data)
    except DataError as err:
        raise DataError(f"{origin}: data.corpus / data.tokenizer: {err}") from None
    rows: list[Row] = []
    pretrain: dict[str, PretrainTrial] = {}
    for name, label, settings, config, head in _pretrain_configs(matrix, origin):
        resolved = config.model_dump(mode="json")
        resolved["model"]["intermediate"] = config.model.ffn  # "4*hidden" and 3072 are one trial
        _check_batch_layout(config, matrix, origin, name)
        _check_vocab_size(config, matrix, origin, name)
        pt_config = {"stage": "pretrain", "pretrain": resolved, "data": data_identity}
        pt_id = trial_id("pt", pt_config)
        if pt_id not in pretrain:
            params = bert_parameters(
                config.vocab_size or vocab,
                config.model.layers,
                config.model.hidden,
                config.model.ffn,
                config.model.max_position,
                nsp=config.objective == "mlm_nsp",
            )
            schedule = resolved["seq_len_schedule"]
            ends = seq_len_phases(config.steps, config.max_seq_len, schedule)
            tokens = config.batch_size * sum(
                (end - start) * seq_len
                for (end, seq_len), start in zip(ends, [0] + [e for e, _ in ends], strict=False)
            )
            pretrain[pt_id] = PretrainTrial(pt_id, pt_config, params, tokens)
        rows.append(Row(name, label, pt_id, settings, head))
    rows = _rows_per_pretrain_step(rows, pretrain, matrix.finetune.pretrain_steps, origin)
    rows = _rows_per_recipe(rows, matrix)
    rows += _rows_per_multitask(rows, matrix)
    recipes = {
        (recipe.name if recipe else "", task): recipe_keys(matrix, recipe, task, origin)
        for recipe in [None, *recipe_rows(matrix)]
        for task in matrix.finetune.tasks
    }
    finetune = _finetune_trials(matrix, rows, pretrain, data, recipes, origin)
    shared, views = _multitask_trials(matrix, rows, pretrain, data, recipes, origin)
    return Plan(matrix, rows, list(pretrain.values()), finetune + shared, recipes, views)


def _finetune_trials(
    matrix: Matrix,
    rows: list[Row],
    pretrain: dict[str, PretrainTrial],
    data: dict[str, Any],
    recipes: dict[tuple[str, str], dict[str, Any]],
    origin: str,
) -> list[FinetuneTrial]:
    ft = matrix.finetune
    grid = ft.grid
    trials = []
    seen: set[str] = set()
    sources = {task: _task_data(task, data, origin) for task in ft.tasks}
    # Rows sharing a pre-training trial, step, head and recipe share their fine-tuning trials too.
    # (Multi-task rows add none: their other tasks' cells are the single-task trials.)
    sources_of_rows = dict.fromkeys(
        (r.pretrain_id, r.pretrain_step, r.head, r.recipe) for r in rows
    )
    for pt_id, pretrain_step, row_head, recipe_name in sources_of_rows:
        pt = pretrain[pt_id]
        for task in ft.tasks:
            head, bilstm_hidden, feature_mode = TASKS[task].fixed_head or row_head
            recipe = recipes[(recipe_name, task)]
            _check_recipe(recipe, head, pt, task, recipe_name, min(grid.batch_size), origin)
            family = TASKS[task].family
            if (head == "bilstm" and family not in ("classification", "span_qa")) or (
                head == "features" and family != "tagging"
            ):
                wanted = "classification and SQuAD" if head == "bilstm" else "tagging (NER)"
                raise MatrixError(
                    f"{origin}: finetune.head: head '{head}' is for {wanted} tasks; task {task} "
                    f"is {family}"
                )
            task_data, n_train = sources[task]
            for point, restart, settings in _grid_settings(ft):
                config = {
                    "stage": "finetune",
                    "pretrain_id": pt.id,
                    "pretrain_step": pretrain_step,
                    "task": task,
                    "task_data": task_data,
                    **settings,
                    "head": head,
                    "bilstm_hidden": bilstm_hidden,
                    "features": feature_mode,
                }
                if recipe:  # BERT's recipe adds no key, so its trial ids predate recipes
                    config["recipe"] = recipe
                params = pt.parameters  # classifier head is negligible next to the encoder
                tokens = settings["epochs"] * n_train * ft.max_seq_len
                ft_id = trial_id("ft", config)
                if ft_id in seen:  # e.g. rows differing only in a head the task fixes
                    continue
                seen.add(ft_id)
                trials.append(
                    FinetuneTrial(
                        ft_id,
                        pt.id,
                        task,
                        point,
                        restart,
                        config,
                        params,
                        tokens,
                    )
                )
    return trials


def _grid_settings(ft: FinetuneSection):
    """(grid point, restart, the keys every fine-tuning config takes from them and from the
    finetune section) for each grid point x restart, in matrix order."""
    grid = ft.grid
    for batch, lr, epochs in itertools.product(grid.batch_size, grid.learning_rate, grid.epochs):
        point = (("batch_size", batch), ("learning_rate", lr), ("epochs", epochs))
        for restart in range(ft.restarts):
            yield (
                point,
                restart,
                {
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
                },
            )


def multitask_key(matrix: Matrix, name: str) -> dict[str, Any] | None:
    """What identifies multi-task group `name` in trial configs ("" = none)."""
    for group in matrix.finetune.multitask:
        if group.name == name:
            return {"tasks": list(group.tasks), "temperature": float(group.temperature)}
    return None


def _rows_per_multitask(rows: list[Row], matrix: Matrix) -> list[Row]:
    """One more row per (row, multi-task group), after the single-task rows."""
    added = []
    for row in rows:
        for group in matrix.finetune.multitask:
            label = group.label or f"multi-task ({' + '.join(group.tasks)})"
            alone = row.name == "base" and len(rows) == 1
            added.append(
                replace(
                    row,
                    name=group.name if alone else f"{row.name}+{group.name}",
                    label=label if alone else f"{row.label}, {label}",
                    settings=row.settings + (("multitask", "+".join(group.tasks)),),
                    multitask=group.name,
                )
            )
    return added


def view_config(shared: dict[str, Any], task: str) -> dict[str, Any]:
    """The config of `task`'s results of the multi-task trial with config `shared` (its id is
    the id of this config; the shared trial's body writes its record)."""
    keys = ("pretrain_id", "pretrain_step", "head", "bilstm_hidden", "features", "multitask")
    view = {"stage": "finetune", "view_of": trial_id("ft", shared), "task": task}
    view |= {k: shared[k] for k in keys}
    view |= {k: shared[k] for k in ("batch_size", "learning_rate", "epochs", "restart")}
    if "recipe" in shared:
        view["recipe"] = shared["recipe"]
    return view


def _multitask_trials(
    matrix: Matrix,
    rows: list[Row],
    pretrain: dict[str, PretrainTrial],
    data: dict[str, Any],
    recipes: dict[tuple[str, str], dict[str, Any]],
    origin: str,
) -> tuple[list[FinetuneTrial], list[FinetuneTrial]]:
    """(shared-encoder trials, their per-task views) of every multi-task row."""
    ft = matrix.finetune
    shared: dict[str, FinetuneTrial] = {}
    views: list[FinetuneTrial] = []
    sources = dict.fromkeys(
        (r.pretrain_id, r.pretrain_step, r.head, r.recipe, r.multitask) for r in rows if r.multitask
    )
    for pt_id, pretrain_step, (head, bilstm_hidden, _), recipe_name, name in sources:
        pt = pretrain[pt_id]
        group = multitask_key(matrix, name)
        tasks = group["tasks"]
        task_recipes = [recipes[(recipe_name, t)] for t in tasks]
        if any(r != task_recipes[0] for r in task_recipes):
            raise MatrixError(
                f"{origin}: finetune.multitask ({name}): its tasks {', '.join(tasks)} have "
                "different recipes (finetune.task_recipe); a shared encoder trains with one"
            )
        task_data = {t: _task_data(t, data, origin) for t in tasks}
        n_train = sum(n for _, n in task_data.values())
        for point, restart, settings in _grid_settings(ft):
            config = {
                "stage": "finetune",
                "pretrain_id": pt.id,
                "pretrain_step": pretrain_step,
                "task": "+".join(tasks),
                "multitask": group,
                "task_data": {t: d for t, (d, _) in task_data.items()},
                **settings,
                "head": head,
                "bilstm_hidden": bilstm_hidden,
                "features": None,
            }
            if task_recipes[0]:
                config["recipe"] = task_recipes[0]
            batch = settings["batch_size"]
            _check_recipe(task_recipes[0], head, pt, tasks[0], recipe_name, batch, origin)
            ft_id = trial_id("ft", config)
            if ft_id in shared:
                continue
            tokens = settings["epochs"] * n_train * ft.max_seq_len
            shared[ft_id] = FinetuneTrial(
                ft_id, pt.id, config["task"], point, restart, config, pt.parameters, tokens
            )
            for task in tasks:
                view = view_config(config, task)
                views.append(
                    FinetuneTrial(trial_id("ft", view), pt.id, task, point, restart, view, 0, 0)
                )
    return list(shared.values()), views


def _rows_per_pretrain_step(
    rows: list[Row], pretrain: dict[str, PretrainTrial], steps: list[int], origin: str
) -> list[Row]:
    """One row per (row, listed pre-training step); the last step is the final model."""
    if not steps:
        return rows
    expanded = []
    for row in rows:
        total = pretrain[row.pretrain_id].config["pretrain"]["steps"]
        for i, step in enumerate(steps):
            if step > total:
                raise MatrixError(
                    f"{origin}: finetune.pretrain_steps[{i}]: step {step} is beyond "
                    f"pretrain.steps = {total} (row {row.name}); list steps up to {total}"
                )
            expanded.append(
                replace(
                    row,
                    name=f"{row.name}@{step}",
                    label=f"{row.label} ({step} steps)",
                    pretrain_step=None if step == total else step,
                )
            )
    return expanded


def _check_vocab_size(config: PretrainConfig, matrix: Matrix, origin: str, row: str) -> None:
    """A trained vocabulary needs its size; any other tokenizer brings its own."""
    trained = matrix.data.tokenizer == "train"
    if trained and config.vocab_size == 0:
        raise MatrixError(
            f"{origin}: pretrain.vocab_size: data.tokenizer = 'train' needs the size of the "
            f"vocabulary to train, e.g. pretrain.vocab_size = 8000 (row {row})"
        )
    if not trained and config.vocab_size:
        raise MatrixError(
            f"{origin}: pretrain.vocab_size ({config.vocab_size}) only applies when "
            f"data.tokenizer = 'train'; remove it, or set data.tokenizer = 'train' (row {row})"
        )


@dataclass(frozen=True)
class RecipeRow:
    """A named recipe: a recipe variant, an axes combination, or a variant x a combination."""

    name: str
    label: str
    keys: dict[str, Any]  # the recipe keys it sets
    where: str  # the matrix keys that define it, for errors
    head: str | None = None  # a head override (recipe variants only)
    bilstm_hidden: int | None = None
    features: str | None = None


def recipe_rows(matrix: Matrix) -> list[RecipeRow]:
    """finetune.recipe_variants x the product of finetune.recipe_axes, in matrix order."""
    ft = matrix.finetune
    axes = list(ft.recipe_axes.items())
    if not ft.recipe_variants and not axes:
        return []
    combos = list(itertools.product(*[[(k, v) for v in values] for k, values in axes]))
    rows = []
    for index, variant in list(enumerate(ft.recipe_variants)) or [(None, None)]:
        for combo in combos:
            keys = variant.recipe.model_dump(mode="json", exclude_none=True) if variant else {}
            keys |= dict(combo)
            suffix = ",".join(f"{k}={v}" for k, v in combo)
            name = variant.name if variant else ""
            label = (variant.label or variant.name) if variant else ""
            where = f"finetune.recipe_variants[{index}] ({name})" if variant else ""
            if suffix:
                name = f"{name}/{suffix}" if name else suffix
                label = f"{label} ({suffix})" if label else suffix
                axes_where = f"finetune.recipe_axes ({suffix})"
                where = f"{where} with {axes_where}" if where else axes_where
            head = (variant.head, variant.bilstm_hidden, variant.features) if variant else ()
            rows.append(RecipeRow(name, label, keys, where, *head))
    return rows


def _rows_per_recipe(rows: list[Row], matrix: Matrix) -> list[Row]:
    """One row per (row, recipe row); a recipe variant's head override beats the row's."""
    recipes = recipe_rows(matrix)
    if not recipes:
        return rows
    expanded = []
    for row in rows:
        for recipe in recipes:
            head, bilstm_hidden, features = row.head
            head = recipe.head or head
            if recipe.bilstm_hidden is not None:
                bilstm_hidden = recipe.bilstm_hidden
            if head == "features":
                features = recipe.features or features or matrix.finetune.features
            else:
                features = None
            settings = tuple((f"recipe.{k}", v) for k, v in recipe.keys.items())
            if head != row.head[0]:
                settings += (("head", head),)
            alone = row.name == "base" and len(rows) == 1  # no pre-training variants: just recipes
            expanded.append(
                replace(
                    row,
                    name=recipe.name if alone else f"{row.name}+{recipe.name}",
                    label=recipe.label if alone else f"{row.label}, {recipe.label}",
                    settings=row.settings + settings,
                    head=(head, bilstm_hidden, features),
                    recipe=recipe.name,
                )
            )
    return expanded


RECIPE_DEFAULTS = Recipe().model_dump(mode="json")


def recipe_keys(
    matrix: Matrix, recipe_row: RecipeRow | None, task: str, origin: str
) -> dict[str, Any]:
    """The recipe of `task` in `recipe_row` (None = none): finetune.recipe, then
    finetune.task_recipe.<task>, then the row's keys; only the keys that differ from BERT's
    recipe are returned (and go into the trial config)."""
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
        recipe = Recipe.model_validate(merged).model_dump(mode="json")
    except ValidationError as err:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise MatrixError(f"{origin}: {where}: {message}") from None
    if TASKS[task].family != "classification":  # pooling heads are for sequence classification
        recipe["pooling"] = RECIPE_DEFAULTS["pooling"]
    keys = {k: v for k, v in recipe.items() if v != RECIPE_DEFAULTS[k]}
    # 0.5 and 1/2, or 2 and 2.0, are one trial
    return {k: float(v) if isinstance(RECIPE_DEFAULTS[k], float) else v for k, v in keys.items()}


def _check_recipe(
    recipe: dict[str, Any],
    head: str,
    pt: PretrainTrial,
    task: str,
    variant: str,
    smallest_batch: int,
    origin: str,
) -> None:
    """Recipe keys that cannot apply to this model, head or grid fail at plan time."""
    where = f"{origin}: finetune.recipe" + (f" (recipe variant {variant})" if variant else "")
    layers = pt.config["pretrain"]["model"]["layers"]
    if recipe.get("freeze_layers", 0) > layers:
        raise MatrixError(
            f"{where}: freeze_layers = {recipe['freeze_layers']} but the model has {layers} "
            f"layers; use at most {layers}"
        )
    pooling = recipe.get("pooling")
    if pooling and head != "linear":
        raise MatrixError(
            f"{where}: pooling = '{pooling}' replaces the linear head's pooling; task {task} "
            f"uses head = '{head}'. Drop one of the two"
        )
    if pooling == "cls" and pt.config["pretrain"]["objective"] == "ltr":
        raise MatrixError(
            f"{where}: pooling = 'cls' on a left-to-right model: its [CLS] has attended only to "
            "itself; use mean, attention or cnn (cls_pooler reads the last token)"
        )
    if recipe.get("grad_accumulation", 1) > smallest_batch:
        raise MatrixError(
            f"{where}: grad_accumulation = {recipe['grad_accumulation']} micro-batches exceeds "
            f"finetune.grid.batch_size {smallest_batch}; use at most {smallest_batch}"
        )


def _check_batch_layout(config: PretrainConfig, matrix: Matrix, origin: str, row: str) -> None:
    """Catch a batch that cannot split over workers/micro-batches now, not when a trial starts."""
    from bertabl.pretrain.layout import batch_layout

    resources = matrix.resources
    try:
        batch_layout(config.batch_size, resources.workers_per_trial, resources.micro_batch_size)
    except UserError as err:
        raise MatrixError(f"{origin}: {err} (row {row})") from None


def _task_data(task: str, data: dict[str, Any], origin: str) -> tuple[dict[str, Any], int]:
    """(the task's data config, its number of training examples); data errors name the key."""
    try:
        config = task_data(task, data)
        return config, train_examples(task, config)
    except DataError as err:
        if TASKS[task].custom is not None:
            key = f"data.custom_tasks.{task}"
        elif data.get("tasks", {}).get(task, {}).get("path"):
            key = f"data.tasks.{task}.path"
        else:
            family = TASKS[task].family
            key = {
                "tagging": "data.conll_dir",
                "span_qa": "data.squad_dir",
                "multiple_choice": "data.swag_dir",
            }.get(family, "data.glue_dir")
        raise DataError(f"{origin}: {key} (task {task}): {err}") from None


def _pretrain_configs(matrix: Matrix, origin: str):
    """Yield (row name, label, settings, PretrainConfig, head) per variant x axes combination.

    A variant is validated as a whole (its keys may only make sense together, like hidden and
    heads); each axes combination is validated on top of it. An error points at the single axis
    entry that fails on its own, or else names the whole combination.
    """
    section = matrix.pretrain
    base = section.base()
    axis_keys = list(section.axes)
    variants = list(enumerate(section.variants)) or [(None, None)]
    for index, variant in variants:
        overrides = list(_flatten(variant.pretrain)) if variant else []
        variant_base = _apply(base, overrides)
        if variant is not None:
            _validate(variant_base, origin, f"pretrain.variants[{index}].pretrain")
        indexed_values = [list(enumerate(section.axes[k])) for k in axis_keys]
        for combo in itertools.product(*indexed_values):
            settings = [(k, v) for k, (_, v) in zip(axis_keys, combo, strict=True)]
            positions = [(k, j) for k, (j, _) in zip(axis_keys, combo, strict=True)]
            config = _validate_combination(variant_base, settings, positions, origin, overrides)
            name = variant.name if variant else ""
            label = (variant.label or variant.name) if variant else ""
            if settings:
                suffix = ",".join(f"{k}={v}" for k, v in settings)
                name = f"{name}/{suffix}" if name else suffix
                label = f"{label} ({suffix})" if label else suffix
            head = _row_head(variant, matrix)
            row_settings = tuple(overrides + settings)
            if head[0] != "linear":
                row_settings += (("head", head[0]),)
            if head[2] is not None:
                row_settings += (("features", head[2]),)
            yield (name or "base"), (label or "base"), row_settings, config, head


def _row_head(variant: Variant | None, matrix: Matrix) -> tuple[str, int, str | None]:
    """The row's (head, BiLSTM size, feature mode): the variant's override, else the matrix's."""
    base = matrix.finetune
    overrides = variant.finetune if variant else None

    def pick(key: str):
        value = getattr(overrides, key) if overrides else None
        return value if value is not None else getattr(base, key)

    head = pick("head")
    return head, pick("bilstm_hidden"), pick("features") if head == "features" else None


def _validate_combination(
    variant_base: dict[str, Any],
    settings: list[tuple[str, Any]],
    positions: list[tuple[str, int]],
    origin: str,
    overrides: list[tuple[str, Any]],
) -> PretrainConfig:
    try:
        return PretrainConfig.model_validate(_apply(variant_base, settings))
    except ValidationError:
        pass
    alone_failing = []
    for (key, value), (_, j) in zip(settings, positions, strict=True):
        try:
            PretrainConfig.model_validate(_apply(variant_base, [(key, value)]))
        except ValidationError:
            alone_failing.append((key, value, j))
    if len(alone_failing) == 1:
        key, value, j = alone_failing[0]
        where = f"{format_key_path(('pretrain', 'axes', key))}[{j}]"
        _validate(_apply(variant_base, [(key, value)]), origin, where)
    where = "pretrain: the combination " + ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in [*overrides, *settings]
    )
    return _validate(_apply(variant_base, settings), origin, where)


def _apply(config: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """`config` with each (dotted key path, value) override merged in."""
    for path, value in overrides:
        nested: Any = value
        for part in reversed(split_key_path(path)):
            nested = {part: nested}
        config = deep_merge(config, nested)
    return config


def _validate(config: dict[str, Any], origin: str, where: str) -> PretrainConfig:
    try:
        return PretrainConfig.model_validate(config)
    except ValidationError as err:
        # e.g. `m.toml: pretrain.axes."model.heads"[1]: pretrain.model: heads (3) must divide...`
        raise MatrixError(
            format_validation_error(
                err, origin=f"{origin}: {where}", prefix=("pretrain",), root=PretrainConfig
            )
        ) from None


def _flatten(table: dict[str, Any], prefix: str = ""):
    """{"model": {"layers": 4}} -> ("model.layers", 4); quoted dotted keys pass through."""
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield from _flatten(value, path)
        else:
            yield path, value
