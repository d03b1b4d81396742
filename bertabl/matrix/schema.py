"""Pydantic models of an ablation matrix (one TOML file).

A matrix has a *base* pre-training config plus two ways to vary it:
- `pretrain.axes`: key path -> list of values; their cartesian product (for sweeps), and
- `pretrain.variants`: named rows, each a set of overrides (for paper tables whose rows are not a
  product, e.g. Table 8's masking mixes).
Both may be combined (variants x axes). Fine-tuning is a grid (batch x lr x epochs) x restarts,
run for every task on every pre-trained variant, with a fine-tuning recipe (`finetune.recipe`,
per task `finetune.task_recipe`, as rows `finetune.recipe_variants` / `finetune.recipe_axes`).

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Keys a matrix leaves out come from its scale preset (see `presets.py`).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bertabl.matrix.references import first_problem
from bertabl.tasks.catalogue import TaskCatalogue
from bertabl.tasks.custom import CustomTask
from bertabl.tasks.spec import TaskSpec
from bertabl.trial.base import Strict
from bertabl.trial.finetune import FeatureMode, Head, Recipe
from bertabl.trial.pretrain import PretrainConfig

Scale = Literal["tiny", "budget", "paper"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"


def _unique_names(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")


def _named(what: str) -> AfterValidator:
    """A list of named items whose names are unique (`what` names them in the error)."""

    def check(items: list) -> list:
        _unique_names([item.name for item in items], what)
        return items

    return AfterValidator(check)


def _distinct(tasks: list[str]) -> list[str]:
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks repeat a name: {tasks}")
    return tasks


TaskNames = Annotated[list[str], AfterValidator(_distinct)]
CROSS_REFERENCE = "cross_reference"  # the error type of first_problem's lines
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


class HeadOverrides(Strict):
    """Fine-tuning settings a variant (row) may change: the head on top of the encoder."""

    head: Head | None = Field(
        None, description="linear (paper), bilstm (Table 5's + BiLSTM), features (Table 7)"
    )
    bilstm_hidden: int | None = Field(None, ge=0, description="BiLSTM size; 0 = model hidden")
    features: FeatureMode | None = Field(None, description="frozen features (head = features)")


class Variant(Strict):
    """A named row: overrides applied to the base pre-training config (and head)."""

    name: str = Field(pattern=NAME_PATTERN, description="id used in reports and --set")
    label: str | None = Field(None, description="row label in reports; defaults to name")
    pretrain: dict[str, Any] = Field(
        default_factory=dict, description="overrides of pretrain keys, e.g. objective = 'mlm'"
    )
    finetune: HeadOverrides = Field(
        HeadOverrides(), description="fine-tuning head for this row, e.g. head = 'bilstm'"
    )


def _optional_fields(model: type[BaseModel]) -> dict[str, Any]:
    """Every field of `model` as an optional override (None = inherit), keeping its checks."""
    fields = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if info.metadata:  # e.g. Field(ge=0) -> Annotated[int, Ge(0)]
            annotation = Annotated[(annotation, *info.metadata)]
        fields[name] = (annotation | None, Field(None, description=info.description))
    return fields


# Built from Recipe, so the two never drift apart; the whole recipe is re-validated once merged.
RecipeOverrides = create_model(
    "RecipeOverrides",
    __base__=Strict,
    __doc__="Recipe keys to change (the others are inherited); see Recipe.",
    **_optional_fields(Recipe),
)


class RecipeVariant(HeadOverrides):
    """A named fine-tuning recipe: one report row per pre-training row."""

    name: str = Field(pattern=NAME_PATTERN, description="id used in row names")
    label: str | None = Field(None, description="row label in reports; defaults to name")
    recipe: RecipeOverrides = Field(  # type: ignore[valid-type]
        RecipeOverrides(), description="recipe keys this row changes, e.g. layer_decay = 0.8"
    )


class PretrainSection(PretrainConfig):
    """The base pre-training config plus how the matrix varies it."""

    axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="key path -> values; the cartesian product becomes pre-training variants",
    )
    variants: Annotated[list[Variant], _named("variant")] = Field(
        default_factory=list, description="named rows"
    )

    @field_validator("axes")
    @classmethod
    def _axes_not_empty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            _check_axis(f"axis '{key}'", values)
        return axes

    def base(self) -> dict[str, Any]:
        """The base config as plain data (without axes/variants)."""
        return self.model_dump(mode="json", exclude={"axes", "variants"})


class Grid(Strict):
    """Fine-tuning hyperparameter grid; every combination is run `restarts` times."""

    batch_size: list[PositiveInt] = Field(min_length=1)
    learning_rate: list[PositiveFloat] = Field(min_length=1)
    epochs: list[PositiveInt] = Field(min_length=1)

    @field_validator("batch_size", "learning_rate", "epochs")
    @classmethod
    def _no_repeats(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"repeats a value: {values}; list each value once")
        return values


class MultiTaskGroup(Strict):
    """Tasks fine-tuned together: one shared encoder, a head per task, one trial per grid point
    and restart. Each task keeps its own dev metric and grid-point selection."""

    name: str = Field(pattern=NAME_PATTERN, description="id used in row names")
    label: str | None = Field(None, description="row label; default: multi-task (a + b)")
    tasks: TaskNames = Field(
        min_length=2, description="sentence(-pair) classification/regression tasks"
    )
    temperature: float = Field(
        1.0,
        ge=1,
        description="batches come from task i with probability proportional to "
        "n_i^(1/temperature) (n_i: its training examples): 1 = proportional to dataset size, "
        "larger = closer to uniform",
    )


class FinetuneSection(Strict):
    """Downstream tasks and the procedure applied to every pre-trained variant."""

    tasks: TaskNames = Field(min_length=1, description="task names; see `bertabl tasks`")
    grid: Grid
    restarts: PositiveInt = Field(description="random restarts per grid point (seeds)")
    selection_metric: dict[str, str] = Field(
        default_factory=dict, description="task -> dev metric used to pick the grid point"
    )
    max_seq_len: int = Field(ge=8, le=4096)
    head: Head = Field(
        "linear",
        description="linear: BERT's classifier on [CLS] (on the last token for ltr models); "
        "bilstm: a randomly initialised BiLSTM over the token states, then a linear layer; "
        "features (tagging tasks): the encoder frozen, `features` of its layers feed a 2-layer "
        "BiLSTM tagger (the paper's feature-based NER)",
    )
    bilstm_hidden: int = Field(0, ge=0, description="BiLSTM size per direction; 0 = model hidden")
    features: FeatureMode = Field(
        "concat_last_four", description="which layers feed the feature-based tagger"
    )
    pretrain_steps: list[PositiveInt] = Field(
        default_factory=list,
        description="fine-tune from the models after these pre-training steps (Figure 5); "
        "one report row per step; empty = the final model only",
    )
    group_by_length: bool = Field(
        True, description="batch examples of similar length (less padding; order stays random)"
    )
    recipe: Recipe = Field(Recipe(), description="the fine-tuning recipe of every trial")
    task_recipe: dict[str, RecipeOverrides] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="task -> recipe keys changed for that task (recipe variants still win)",
    )
    recipe_variants: Annotated[list[RecipeVariant], _named("recipe variant")] = Field(
        default_factory=list,
        description="named recipes; each becomes a report row for every pre-training row",
    )
    recipe_axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="recipe key -> values; each combination of the product is a recipe row "
        "(crossed with recipe_variants when both are given)",
    )
    multitask: Annotated[list[MultiTaskGroup], _named("multitask group")] = Field(
        default_factory=list,
        description="groups of tasks fine-tuned together on one encoder; each group adds a "
        "report row per row (its other tasks' cells are single-task)",
    )
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    eval_batch_size: PositiveInt = 128
    seed: int = 0

    @field_validator("pretrain_steps")
    @classmethod
    def _increasing_steps(cls, steps: list[int]) -> list[int]:
        if steps != sorted(set(steps)):
            raise ValueError(f"list each step once, in increasing order (got {steps})")
        return steps

    @field_validator("recipe_axes")
    @classmethod
    def _recipe_axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if key not in Recipe.model_fields:
                raise ValueError(
                    f"recipe_axes: unknown recipe key '{key}'; recipe keys: "
                    f"{', '.join(Recipe.model_fields)}"
                )
            _check_axis(f"recipe_axes.{key}", values)
            for index, value in enumerate(values):
                try:
                    RecipeOverrides.model_validate({key: value})
                except ValidationError as err:
                    message = err.errors()[0]["msg"]
                    raise ValueError(f"recipe_axes.{key}[{index}] = {value!r}: {message}") from None
        return axes

    @model_validator(mode="after")
    def _multitask_groups(self) -> FinetuneSection:
        names = [g.name for g in self.multitask]
        clash = set(names) & {v.name for v in self.recipe_variants}
        if clash:
            raise ValueError(f"{sorted(clash)} names both a multitask group and a recipe variant")
        return self


class SyntheticData(Strict):
    """Sizes of the embedded synthetic suite (generated from `seed`; nothing is downloaded)."""

    seed: int = 0
    documents: PositiveInt = Field(400, description="pre-training corpus documents")
    sentences_per_document: PositiveInt = Field(12, ge=2)
    train_examples: PositiveInt = Field(2000, description="per fine-tuning task")
    dev_examples: PositiveInt = Field(500, description="per fine-tuning task")


class TaskData(Strict):
    """Where one fine-tuning task's data comes from, and how much of it to use."""

    source: Literal["local", "hub"] = Field(
        "local",
        description="local: the original files (GLUE TSVs, CoNLL columns, SQuAD JSON); hub: the "
        "Hugging Face Hub (GLUE and SQuAD; needs network)",
    )
    path: str | None = Field(
        None, description="local: the task's folder (or the GLUE root); default data.glue_dir"
    )
    hub_dataset: str = Field(
        "nyu-mll/glue", description="hub: dataset name (SQuAD tasks default to rajpurkar/squad*)"
    )
    max_train_examples: int = Field(0, ge=0, description="seeded subset; 0 = all")
    max_dev_examples: int = Field(0, ge=0, description="seeded subset; 0 = all")


class HubCorpus(Strict):
    """How a `hub:` corpus's rows become documents."""

    config: str | None = Field(None, description="dataset config, e.g. 20231101.en")
    split: str = "train"
    text_column: str = "text"
    rows_per_document: int = Field(
        0,
        ge=0,
        description="0: each row is a document (Wikipedia: its lines are the segments); n: every "
        "n consecutive rows form a document, one segment each (line-per-row corpora such as "
        "BookCorpus)",
    )
    max_documents: int = Field(0, ge=0, description="use the first n documents; 0 = all")


CorpusFormat = Literal["bert", "paragraphs", "wikitext"]
CORPUS_HELP = (
    "pre-training corpus: 'synthetic', a text file / folder of .txt files, or "
    "'hub:<dataset>' (a Hugging Face dataset; needs network; see corpus_hub)"
)
FORMAT_HELP = (
    "bert: one sentence a line, blank line between documents; paragraphs: one "
    "document a file, blank-line-separated paragraphs as segments; wikitext: raw "
    "WikiText files (' = Title = ' starts an article, each other line a paragraph)"
)


class CorpusEntry(Strict):
    """One corpus of several (`data.corpora`), with its own source and format."""

    corpus: str = Field(description=CORPUS_HELP)
    corpus_format: CorpusFormat = Field("bert", description=FORMAT_HELP)
    corpus_hub: HubCorpus = HubCorpus()


class DataSection(Strict):
    """Where the pre-training corpus, the tokenizer and the fine-tuning data come from."""

    corpus: str = Field("synthetic", description=CORPUS_HELP)
    corpus_format: CorpusFormat = Field("bert", description=FORMAT_HELP)
    corpus_hub: HubCorpus = HubCorpus()
    corpora: list[CorpusEntry] = Field(
        default_factory=list,
        description="several pre-training corpora, concatenated as documents (the paper: "
        "BooksCorpus + Wikipedia), each {corpus, corpus_format, corpus_hub}; instead of "
        "data.corpus",
    )
    tokenizer: str = Field(
        "synthetic",
        description="'synthetic'; the path of a WordPiece vocab.txt; a folder saved by "
        "transformers (tokenizer.json); 'hub:<name>' (e.g. hub:bert-base-uncased; needs network); "
        "or 'train': a WordPiece vocabulary of pretrain.vocab_size trained on the corpus",
    )
    lowercase: bool = Field(True, description="lowercase text (for uncased vocabularies)")
    synthetic: SyntheticData = SyntheticData()
    glue_dir: str = Field(
        "glue_data",
        description="folder with the GLUE task folders (SST-2/, MRPC/, ...) in their original "
        "layout; relative paths are relative to the working directory",
    )
    conll_dir: str = Field(
        "conll2003", description="folder with the CoNLL-2003 files eng.train and eng.testa"
    )
    squad_dir: str = Field(
        "squad",
        description="folder with the official SQuAD JSON files (train-v1.1.json, dev-v1.1.json, "
        "train-v2.0.json, dev-v2.0.json)",
    )
    swag_dir: str = Field("swag", description="folder with SWAG's original train.csv and val.csv")
    custom_tasks: dict[Annotated[str, Field(pattern=NAME_PATTERN)], CustomTask] = Field(
        default_factory=dict,
        description="your own classification/regression tasks, by name; list them in "
        "finetune.tasks like any other",
    )
    tasks: dict[str, TaskData] = Field(
        default_factory=dict, description="per-task data settings, by task name"
    )

    @model_validator(mode="after")
    def _one_way_to_name_the_corpus(self) -> DataSection:
        given = {"corpus", "corpus_format", "corpus_hub"} & self.model_fields_set
        if self.corpora and given:
            raise ValueError(
                f"data.corpora and data.{sorted(given)[0]} both name the pre-training corpus; "
                "give each corpus's keys inside data.corpora and drop the other"
            )
        return self

    @field_validator("custom_tasks")
    @classmethod
    def _not_built_in(cls, custom: dict[str, CustomTask]) -> dict[str, CustomTask]:
        TaskCatalogue(custom)  # ValueError for a built-in task's name
        return custom


class Resources(Strict):
    """Per-trial resources handed to Ray Tune."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="fractions share one GPU")
    max_concurrent_trials: int = Field(0, ge=0, description="0 = as many as resources allow")
    max_failures: int = Field(0, ge=0, description="Ray Tune retries per trial")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs that support it, else fp16 with loss scaling; fp32 on "
        "CPU. Not part of trial ids.",
    )
    workers_per_trial: PositiveInt = Field(
        1,
        description="data-parallel processes per pre-training trial (one per GPU on GPU hosts); "
        "the trial asks Ray for cpus/gpus_per_trial times this",
    )
    micro_batch_size: int = Field(
        0,
        ge=0,
        description="pre-training sequences per process per forward pass; gradients accumulate "
        "to pretrain.batch_size; 0 = batch_size / workers_per_trial",
    )


class Checkpointing(Strict):
    """How often trials save their training state (not part of trial ids: results don't change)."""

    every_steps: int = Field(1000, ge=0, description="optimizer steps; 0 = only at epoch ends")
    keep: PositiveInt = Field(2, description="newest checkpoints kept per trial")


class ReportSection(Strict):
    """How `bertabl report` lays out the results."""

    layout: Literal["generic", "table5", "table6", "table7", "table8", "fig5"] | None = Field(
        None,
        description="generic (rows x tasks) or the BERT paper's table5 / table6 / table7 / "
        "table8 / fig5 (our rows beside the paper's); default: the matrix name when it is one "
        "of these, else table5/7/8 when every variant name is a row id of that table, else "
        "generic",
    )
    title: str | None = Field(None, description="report heading; default: the matrix name")
    paper_rows: dict[str, str] = Field(
        default_factory=dict,
        description="variant (row) name -> the paper row id it stands beside, where the names "
        "differ (ids: bert_base, no_nsp, ...; Table 6 l12_h768_a12; Table 8 mask80_same10_rnd10)",
    )


class Matrix(Strict):
    """A whole ablation study: what to pre-train, what to fine-tune, how to report it."""

    name: str = Field(pattern=NAME_PATTERN, description="names the run directory and report")
    description: str = ""
    scale: Scale = Field("tiny", description="preset that fills keys the matrix leaves out")
    data: DataSection = DataSection()
    pretrain: PretrainSection
    finetune: FinetuneSection
    resources: Resources = Resources()
    checkpointing: Checkpointing = Checkpointing()
    report: ReportSection = ReportSection()
    scales: dict[Scale, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-scale changes of this matrix, applied over the file when that scale is "
        "in force (e.g. [scales.tiny.finetune] pretrain_steps = [...]); --set still wins",
    )

    @cached_property
    def catalogue(self) -> TaskCatalogue:
        """The tasks this matrix can name: the built-in ones and its data.custom_tasks."""
        return TaskCatalogue(self.data.custom_tasks)

    def spec(self, task: str) -> TaskSpec:
        return self.catalogue[task]

    def metric_for(self, task: str) -> str:
        """The dev metric that selects the grid point for `task`."""
        return self.catalogue.metric_for(task, self.finetune.selection_metric)

    @model_validator(mode="after")
    def _cross_references(self) -> Matrix:
        problem = first_problem(self)
        if problem:  # the line names its own key path (matrix/load.py prints it as is)
            raise PydanticCustomError(CROSS_REFERENCE, "{line}", {"line": problem})
        return self


def _check_axis(what: str, values: list[Any]) -> None:
    """An axis lists at least one value, each once."""
    if not values:
        raise ValueError(f"{what} has no values; give at least one")
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise ValueError(f"{what} repeats a value: {values}")
