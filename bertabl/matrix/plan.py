"""Expansion: Matrix -> Plan (pre-training trials, fine-tuning trials, report rows).

Pre-training trials are the resolved configs of (variants x axes), deduplicated by id. Fine-tuning
trials are pre-training trial x task x grid point x restart, each depending on one pre-training
trial (trials.py). Rows are what the report shows (rows.py). A trial id is a short hash of the
trial's fully resolved config (bertabl/trial/identity.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bertabl.data.corpus import corpus_data
from bertabl.data.fingerprints import Fingerprint, recording
from bertabl.data.tokenizer import vocab_size
from bertabl.errors import DataError, MatrixError
from bertabl.matrix.axes import pretrain_combinations
from bertabl.matrix.checks import check_batch_layout, check_vocab_size
from bertabl.matrix.compute import bert_parameters
from bertabl.matrix.models import (
    CheckpointModel,
    TokenizerFolder,
    resolve_checkpoint,
    untrained_like,
)
from bertabl.matrix.rows import (
    Row,
    check_crossed_recipes,
    pretrain_row,
    recipe_rows,
    rows_per_multitask,
    rows_per_pretrain_step,
    rows_per_recipe,
)
from bertabl.matrix.schema import Matrix
from bertabl.matrix.trials import (
    FinetuneTrial,
    PretrainTrial,
    TestTrial,
    finetune_trials,
    resolved_recipe,
)
from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.trial.data import DataRef
from bertabl.trial.finetune import Recipe
from bertabl.trial.pretrain import PretrainTrialConfig

__all__ = ["FinetuneTrial", "Plan", "PretrainTrial", "Row", "build_plan"]


@dataclass
class Plan:
    matrix: Matrix
    rows: list[Row]
    pretrain: list[PretrainTrial]
    finetune: list[FinetuneTrial]
    # (recipe row name, task) -> the recipe its trials train with
    recipes: dict[tuple[str, str], Recipe] = field(default_factory=dict)
    # Per-task results of multi-task trials: not run themselves (their shared trial writes
    # their records), but what report cells of multi-task rows select from.
    views: list[FinetuneTrial] = field(default_factory=list)
    # Models rows fine-tune that no trial of this run pre-trains (variants' `from`).
    checkpoints: list[CheckpointModel] = field(default_factory=list)
    # A dry run's missing data, one line each (their trials' ids are provisional).
    warnings: list[str] = field(default_factory=list)
    # The test-split scorings that run once their cells' fine-tunes have settled.
    tests: list[TestTrial] = field(default_factory=list)
    # Every single-task cell's fine-tuning trials, as (task, trial ids): what selection picks
    # among (the run keeps only the selected grid point's models).
    cells: list[tuple[str, list[str]]] = field(default_factory=list)
    # The input files whose content the trial ids hold (data/fingerprints.py).
    inputs: list[Fingerprint] = field(default_factory=list)
    _by_id: dict[str, PretrainTrial | FinetuneTrial] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {t.id: t for t in [*self.pretrain, *self.finetune, *self.views, *self.tests]}

    def trial(self, trial_id: str) -> PretrainTrial | FinetuneTrial | TestTrial:
        return self._by_id[trial_id]

    def model(self, model_id: str) -> PretrainTrial | CheckpointModel:
        """What a row fine-tunes: its pre-training trial, or the checkpoint it names."""
        for checkpoint in self.checkpoints:
            if checkpoint.id == model_id:
                return checkpoint
        return self._by_id[model_id]

    def describe(self, trial_id: str) -> str:
        """A trial in words: its rows (pre-training) or task, grid point and restart."""
        trial = self.trial(trial_id)
        if isinstance(trial, TestTrial):
            return f"{trial.config.task} {' + '.join(trial.config.splits)} of the selected models"
        if isinstance(trial, FinetuneTrial):
            point = " ".join(f"{k}={v:g}" for k, v in trial.grid_point)
            return f"{trial.task} {point} restart={trial.restart}"
        return ", ".join(r.name for r in self.rows if r.pretrain_id == trial_id)

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


def build_plan(matrix: Matrix, origin: str = "matrix", dry_run: bool = False) -> Plan:
    """Expand `matrix` into trials; invalid combinations raise MatrixError naming their key.

    A `dry_run` (`bertabl plan`) also works before the data is downloaded: missing data becomes
    a warning in `Plan.warnings`, and the trials that read it get provisional ids. The input
    files hashed on the way are the plan's `inputs`."""
    with recording() as inputs:
        plan = _expand(matrix, origin, dry_run)
    plan.inputs = sorted(inputs.values(), key=lambda f: f.path)
    return plan


def _expand(matrix: Matrix, origin: str, dry_run: bool) -> Plan:
    warnings: list[str] | None = [] if dry_run else None
    variants = matrix.pretrain.variants
    if not variants or any(v.from_ is None for v in variants):  # something is pre-trained here
        data, vocab = _corpus(matrix, origin, warnings)
    rows: list[Row] = []
    pretrain: dict[str, PretrainTrial] = {}
    checkpoints: dict[str, CheckpointModel] = {}
    for index, variant in enumerate(matrix.pretrain.variants):
        if variant.from_ is None:
            continue
        where = f"{origin}: pretrain.variants[{index}].from"
        if matrix.pretrain.axes:
            raise MatrixError(
                f"{where}: pretrain.axes vary pre-training, and row {variant.name} is not "
                "pre-trained here; move the checkpoint rows to a matrix without axes"
            )
        if matrix.finetune.pretrain_steps:
            raise MatrixError(
                f"{where}: finetune.pretrain_steps picks models saved during this run's "
                f"pre-training; row {variant.name} has none (use run:<dir>/<pt-id>@<step>)"
            )
        model = resolve_checkpoint(variant.from_, where)
        if variant.untrained:
            where = f"{origin}: pretrain.variants[{index}].untrained"
            control = untrained_like(model, matrix.pretrain.base(), where)
            tokenizer = vocab_size(TokenizerFolder(str(model.checkpoint.location)))
            pretrain[control.id] = _pretrain_trial(control, tokenizer or 0)
            row = pretrain_row(variant, [], [], control.id, matrix)
            settings = (("from", variant.from_), ("untrained", True))
            rows.append(replace(row, settings=(*settings, *row.settings)))
            continue
        checkpoints[model.id] = model
        row = pretrain_row(variant, [], [], model.id, matrix)
        rows.append(replace(row, settings=(("from", variant.from_), *row.settings)))
    order = {v.name: i for i, v in enumerate(matrix.pretrain.variants)}
    for variant, overrides, settings, config in pretrain_combinations(matrix.pretrain, origin):
        model = config.model.model_copy(update={"intermediate": config.model.ffn})
        config = config.model_copy(update={"model": model})  # "4*hidden" and 3072: one trial
        trial_config = PretrainTrialConfig(pretrain=config, data=data)
        pt_id = trial_config.id
        row = pretrain_row(variant, overrides, settings, pt_id, matrix)
        check_batch_layout(config, matrix, origin, row.name)
        check_vocab_size(config, matrix, origin, row.name)
        if pt_id not in pretrain:
            pretrain[pt_id] = _pretrain_trial(trial_config, vocab)
        rows.append(row)
    # rows in matrix order, checkpoint rows among the others (a stable sort keeps axes' order)
    rows.sort(key=lambda r: order.get(r.name.split("/")[0], 0))
    steps = {pt_id: t.config.pretrain.steps for pt_id, t in pretrain.items()}
    rows = rows_per_pretrain_step(rows, steps, matrix.finetune.pretrain_steps, origin)
    check_crossed_recipes(matrix, origin)
    rows = rows_per_recipe(rows, matrix)
    rows += rows_per_multitask(rows, matrix)
    recipes = {
        (recipe.name if recipe else "", task): resolved_recipe(matrix, recipe, task, origin)
        for recipe in [None, *recipe_rows(matrix)]
        for task in matrix.finetune.tasks
    }
    models = {**pretrain, **checkpoints}
    built = finetune_trials(matrix, rows, models, recipes, origin, warnings)
    finetune, views, tests, cells = built
    plan = Plan(
        matrix,
        rows,
        list(pretrain.values()),
        finetune,
        recipes,
        views,
        list(checkpoints.values()),
        tests=tests,
        cells=cells,
    )
    plan.warnings = warnings or []
    return plan


def _pretrain_trial(config: PretrainTrialConfig, vocab: int) -> PretrainTrial:
    """The trial of `config`, its parameters counted with its vocabulary (`vocab`, the data
    section's tokenizer's size, unless the config trains a vocabulary of its own)."""
    pt = config.pretrain
    params = bert_parameters(
        pt.vocab_size or vocab,
        pt.model.layers,
        pt.model.hidden,
        pt.model.ffn,
        pt.model.max_position,
        nsp=OBJECTIVES[pt.objective].nsp_head,
    )
    return PretrainTrial(config.id, config, params)


def _corpus(matrix: Matrix, origin: str, warnings: list[str] | None) -> tuple[DataRef, int]:
    """(the corpus and tokenizer, the vocabulary size); missing ones are a warning in a dry run
    (a stand-in identity; BERT's vocabulary size for the estimates)."""
    try:
        data, vocab = corpus_data(matrix.data), vocab_size(matrix.data)
    except DataError as err:
        message = f"{origin}: data.corpus / data.tokenizer: {err}"
        if warnings is None:
            raise DataError(message) from None
        warnings.append(message + " (estimates assume BERT's 30,522-token vocabulary)")
        stand_in = {"corpus": "missing", "tokenizer": matrix.data.tokenizer}
        return DataRef(identity=stand_in, location={"tokenizer": None}), 30_522
    if vocab is None:  # a Hub tokenizer not in the local cache: only the estimates need it
        if warnings is not None:
            warnings.append(
                f"{origin}: data.tokenizer: {matrix.data.tokenizer} is not in the Hugging Face "
                "cache, so its vocabulary size is unknown here; estimates assume BERT's 30,522"
            )
        vocab = 30_522
    return data, vocab
