"""Expansion: Matrix -> Plan (pre-training trials, fine-tuning trials, report rows).

Pre-training trials are the resolved configs of (variants x axes), deduplicated by id. Fine-tuning
trials are pre-training trial x task x grid point x restart, each depending on one pre-training
trial. A trial id is a short hash of the trial's fully resolved config in canonical JSON, so it is
the same across runs, machines and key order in the TOML, and changes with any value that matters.
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
from bertabl.matrix.schema import Matrix, PretrainConfig, Variant, seq_len_phases

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
    def flops(self) -> float:
        return training_flops(self.parameters, self.tokens)


@dataclass(frozen=True)
class Row:
    """One report row: a named pre-training variant."""

    name: str
    label: str
    pretrain_id: str
    settings: tuple[tuple[str, Any], ...]  # the overrides that define it, for the report
    head: tuple[str, int, str | None] = ("linear", 0, None)  # head, BiLSTM size, feature mode
    pretrain_step: int | None = None  # fine-tune from the model after this step; None = final


@dataclass
class Plan:
    matrix: Matrix
    rows: list[Row]
    pretrain: list[PretrainTrial]
    finetune: list[FinetuneTrial]
    _by_id: dict[str, PretrainTrial | FinetuneTrial] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {t.id: t for t in [*self.pretrain, *self.finetune]}

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
        return [
            t
            for t in self.finetune
            if (t.pretrain_id, t.head, t.pretrain_step, t.task)
            == (row.pretrain_id, head, row.pretrain_step, task)
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
    finetune = _finetune_trials(matrix, rows, pretrain, data, origin)
    return Plan(matrix, rows, list(pretrain.values()), finetune)


def _finetune_trials(
    matrix: Matrix,
    rows: list[Row],
    pretrain: dict[str, PretrainTrial],
    data: dict[str, Any],
    origin: str,
) -> list[FinetuneTrial]:
    ft = matrix.finetune
    grid = ft.grid
    trials = []
    seen: set[str] = set()
    sources = {task: _task_data(task, data, origin) for task in ft.tasks}
    # Rows sharing a pre-training trial, step and head share their fine-tuning trials too.
    sources_of_rows = dict.fromkeys((r.pretrain_id, r.pretrain_step, r.head) for r in rows)
    for pt_id, pretrain_step, row_head in sources_of_rows:
        pt = pretrain[pt_id]
        for task in ft.tasks:
            head, bilstm_hidden, feature_mode = TASKS[task].fixed_head or row_head
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
            for batch, lr, epochs in itertools.product(
                grid.batch_size, grid.learning_rate, grid.epochs
            ):
                for restart in range(ft.restarts):
                    config = {
                        "stage": "finetune",
                        "pretrain_id": pt.id,
                        "pretrain_step": pretrain_step,
                        "task": task,
                        "task_data": task_data,
                        "batch_size": batch,
                        "learning_rate": lr,
                        "epochs": epochs,
                        "restart": restart,
                        "seed": ft.seed + restart,
                        "max_seq_len": ft.max_seq_len,
                        "head": head,
                        "bilstm_hidden": bilstm_hidden,
                        "features": feature_mode,
                        "group_by_length": ft.group_by_length,
                        "warmup_fraction": ft.warmup_fraction,
                        "weight_decay": ft.weight_decay,
                        "eval_batch_size": ft.eval_batch_size,
                    }
                    point = (("batch_size", batch), ("learning_rate", lr), ("epochs", epochs))
                    params = pt.parameters  # classifier head is negligible next to the encoder
                    tokens = epochs * n_train * ft.max_seq_len
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


def _check_batch_layout(config: PretrainConfig, matrix: Matrix, origin: str, row: str) -> None:
    """Catch a batch that cannot split over workers/micro-batches now, not when a trial starts."""
    from bertabl.pretrain.parallel import batch_layout

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
        if data.get("tasks", {}).get(task, {}).get("path"):
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
