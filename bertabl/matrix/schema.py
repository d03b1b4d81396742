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

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from bertabl.data.tasks import DECLARED, TASKS, register_custom_task

Objective = Literal["mlm_nsp", "mlm", "ltr"]
Scale = Literal["tiny", "budget", "paper"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


def _known_task(name: str) -> str:
    if name not in TASKS and name in DECLARED:
        raise ValueError(f"task '{name}' has an invalid definition in data.custom_tasks")
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))}")
    return name


TaskName = Annotated[str, AfterValidator(_known_task)]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors; values are not coerced across types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class ModelConfig(Strict):
    """Transformer size. `intermediate` defaults to 4 x hidden, as in BERT."""

    layers: PositiveInt = Field(description="number of Transformer layers (#L)")
    hidden: PositiveInt = Field(description="hidden size (#H)")
    heads: PositiveInt = Field(description="attention heads (#A); must divide hidden")
    intermediate: PositiveInt | None = Field(None, description="feed-forward size; 4*hidden")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on all layers")
    max_position: PositiveInt = Field(512, description="position embeddings")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelConfig:
        if self.hidden % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide hidden ({self.hidden}); "
                f"e.g. heads = {_divisor_near(self.hidden, self.heads)}"
            )
        return self

    @property
    def ffn(self) -> int:
        return self.intermediate or 4 * self.hidden


class MaskingConfig(Strict):
    """Which positions the MLM predicts, and what the chosen positions become (Table 8)."""

    probability: float = Field(0.15, gt=0, lt=1, description="fraction of tokens chosen")
    mask: float = Field(0.8, ge=0, le=1, description="chosen -> [MASK]")
    random: float = Field(0.1, ge=0, le=1, description="chosen -> random token")
    same: float = Field(0.1, ge=0, le=1, description="chosen -> left unchanged")
    whole_word: bool = Field(
        False,
        description="choose whole words (a WordPiece token and its ## continuations) instead of "
        "single tokens; the mask/random/same split still applies per token",
    )

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> MaskingConfig:
        total = self.mask + self.random + self.same
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"mask + random + same must sum to 1 (got {self.mask} + {self.random} + "
                f"{self.same} = {total:g})"
            )
        return self


class SeqLenPhase(Strict):
    """One phase of a sequence-length schedule."""

    seq_len: int = Field(ge=16, le=4096, description="tokens per example in this phase")
    fraction: float = Field(gt=0, le=1, description="fraction of pretrain.steps in this phase")


class PretrainConfig(Strict):
    """One fully specified pre-training run (what a pre-training trial executes)."""

    objective: Objective = Field(
        description="mlm_nsp (BERT), mlm (No NSP), ltr (left-to-right LM, no NSP; stays causal "
        "when fine-tuned)"
    )
    model: ModelConfig
    masking: MaskingConfig = MaskingConfig()
    steps: PositiveInt
    batch_size: PositiveInt
    max_seq_len: int = Field(ge=16, le=4096, description="tokens per example, incl. specials")
    seq_len_schedule: list[SeqLenPhase] = Field(
        default_factory=list,
        description="phases of (seq_len, fraction of steps) in order; the paper: 90% of steps at "
        "128, then 10% at 512. The last phase's seq_len must be max_seq_len. Empty = "
        "max_seq_len throughout",
    )
    vocab_size: int = Field(
        0,
        ge=0,
        description="size of the WordPiece vocabulary trained on the corpus when data.tokenizer "
        "= 'train' (an axis like any other); leave 0 for any other tokenizer",
    )
    heldout_fraction: float = Field(
        0.02,
        ge=0,
        lt=0.5,
        description="fraction of corpus documents held out of training (at least 2 when > 0); "
        "the trial reports held-out MLM (or LTR) perplexity on them (Table 6's LM ppl)",
    )
    heldout_examples: PositiveInt = Field(
        1000, description="at most this many held-out examples are scored"
    )
    learning_rate: PositiveFloat
    warmup_fraction: float = Field(0.01, ge=0, lt=1, description="linear warmup, then decay")
    weight_decay: float = Field(0.01, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-6, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _fits_positions(self) -> PretrainConfig:
        if self.max_seq_len > self.model.max_position:
            raise ValueError(
                f"max_seq_len ({self.max_seq_len}) exceeds model.max_position "
                f"({self.model.max_position})"
            )
        return self

    @model_validator(mode="after")
    def _schedule_is_whole(self) -> PretrainConfig:
        if not self.seq_len_schedule:
            return self
        total = sum(p.fraction for p in self.seq_len_schedule)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"seq_len_schedule fractions must sum to 1 (got {total:g})")
        if self.seq_len_schedule[-1].seq_len != self.max_seq_len:
            raise ValueError(
                f"seq_len_schedule ends at seq_len {self.seq_len_schedule[-1].seq_len}, but "
                f"max_seq_len is {self.max_seq_len}; make the last phase's seq_len max_seq_len, "
                "or set seq_len_schedule = [] to train at max_seq_len throughout"
            )
        too_long = [p.seq_len for p in self.seq_len_schedule if p.seq_len > self.max_seq_len]
        if too_long:
            raise ValueError(
                f"seq_len_schedule has seq_len {too_long[0]} > max_seq_len ({self.max_seq_len})"
            )
        return self


Head = Literal["linear", "bilstm", "features"]
FeatureMode = Literal[
    "embeddings",
    "second_to_last_hidden",
    "last_hidden",
    "weighted_sum_last_four",
    "concat_last_four",
    "weighted_sum_all",
]


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


def seq_len_phases(
    steps: int, max_seq_len: int, schedule: list[dict[str, Any]]
) -> list[tuple[int, int]]:
    """[(last step of the phase, seq_len)] covering steps 1..steps in order (a resolved
    pretrain config's `seq_len_schedule`; empty = max_seq_len throughout). Phases that round to
    no steps are dropped."""
    ends, done, previous = [], 0.0, 0
    for phase in schedule or [{"seq_len": max_seq_len, "fraction": 1.0}]:
        done += phase["fraction"]
        end = min(steps, round(done * steps))
        if end > previous:
            ends.append((end, phase["seq_len"]))
            previous = end
    if ends:
        ends[-1] = (steps, ends[-1][1])
    return ends or [(steps, max_seq_len)]


Pooling = Literal["cls_pooler", "cls", "mean", "attention", "cnn"]


class Recipe(Strict):
    """How a pre-trained encoder is fine-tuned, beyond the grid: each key is one recipe axis.

    The defaults are BERT's own recipe. `finetune.recipe` sets them for the matrix,
    `finetune.task_recipe.<task>` per task, and `finetune.recipe_variants` names report rows.
    """

    layer_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="layer-wise learning-rate decay: encoder layer i of L trains at lr * "
        "layer_decay^(L+1-i), the embeddings at lr * layer_decay^(L+1); 1.0 = off",
    )
    head_lr_scale: float = Field(
        1.0,
        gt=0,
        description="learning rate of the new (randomly initialised) head, as a multiple of lr",
    )
    decay_exclusion: bool = Field(
        True, description="no weight decay on biases and LayerNorm weights (as BERT)"
    )
    freeze_embeddings: bool = Field(False, description="keep the embedding layer frozen")
    freeze_layers: int = Field(0, ge=0, description="keep the bottom k encoder layers frozen")
    unfreeze_every: int = Field(
        0,
        ge=0,
        description="gradual unfreezing: every this many epochs the top-most frozen layer "
        "thaws (the embeddings last); 0 = frozen parts stay frozen",
    )
    pooling: Pooling = Field(
        "cls_pooler",
        description="sequence classification/regression with head = 'linear': cls_pooler "
        "(BERT: [CLS] through the pre-trained pooler), cls ([CLS] without the pooler), mean "
        "(over real tokens), attention (a learned query over the token states), cnn (a width-3 "
        "convolution over the token states, max over time); other task families ignore it; "
        "the BiLSTM head is head = 'bilstm'",
    )
    ema_decay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="exponential moving average of the weights, updated after every "
        "optimizer step; evaluation uses the averaged weights; 0 = off",
    )
    grad_accumulation: PositiveInt = Field(
        1,
        description="micro-batches per optimizer step: the grid's batch_size is split into "
        "this many forward/backward passes (same effective batch, less memory)",
    )

    @model_validator(mode="after")
    def _something_to_unfreeze(self) -> Recipe:
        if self.unfreeze_every and not (self.freeze_layers or self.freeze_embeddings):
            raise ValueError(
                "unfreeze_every needs something frozen: set freeze_layers and/or "
                "freeze_embeddings, or unfreeze_every = 0"
            )
        return self


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
    variants: list[Variant] = Field(default_factory=list, description="named rows")

    @field_validator("axes")
    @classmethod
    def _axes_not_empty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"axis '{key}' has no values; give at least one")
            if len({_canonical(v) for v in values}) != len(values):
                raise ValueError(f"axis '{key}' repeats a value: {values}")
        return axes

    @field_validator("variants")
    @classmethod
    def _unique_variant_names(cls, variants: list[Variant]) -> list[Variant]:
        _unique_names([v.name for v in variants], "variant")
        return variants

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
    tasks: list[TaskName] = Field(
        min_length=2, description="sentence(-pair) classification/regression tasks"
    )
    temperature: float = Field(
        1.0,
        ge=1,
        description="batches come from task i with probability proportional to "
        "n_i^(1/temperature) (n_i: its training examples): 1 = proportional to dataset size, "
        "larger = closer to uniform",
    )

    @field_validator("tasks")
    @classmethod
    def _distinct(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks repeat a name: {tasks}")
        wrong = [t for t in tasks if TASKS[t].family != "classification"]
        if wrong:
            raise ValueError(
                f"multi-task groups take sentence(-pair) classification/regression tasks; "
                f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not"
            )
        return tasks


class FinetuneSection(Strict):
    """Downstream tasks and the procedure applied to every pre-trained variant."""

    tasks: list[TaskName] = Field(min_length=1, description="task names; see `bertabl tasks`")
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
    task_recipe: dict[TaskName, RecipeOverrides] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="task -> recipe keys changed for that task (recipe variants still win)",
    )
    recipe_variants: list[RecipeVariant] = Field(
        default_factory=list,
        description="named recipes; each becomes a report row for every pre-training row",
    )
    recipe_axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="recipe key -> values; each combination of the product is a recipe row "
        "(crossed with recipe_variants when both are given)",
    )
    multitask: list[MultiTaskGroup] = Field(
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

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks repeat a name: {tasks}")
        return tasks

    @field_validator("recipe_variants")
    @classmethod
    def _unique_recipe_names(cls, variants: list[RecipeVariant]) -> list[RecipeVariant]:
        _unique_names([v.name for v in variants], "recipe variant")
        return variants

    @field_validator("recipe_axes")
    @classmethod
    def _recipe_axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if key not in Recipe.model_fields:
                raise ValueError(
                    f"recipe_axes: unknown recipe key '{key}'; recipe keys: "
                    f"{', '.join(Recipe.model_fields)}"
                )
            if not values:
                raise ValueError(f"recipe_axes.{key} has no values; give at least one")
            if len({_canonical(v) for v in values}) != len(values):
                raise ValueError(f"recipe_axes.{key} repeats a value: {values}")
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
        if len(set(names)) != len(names):
            raise ValueError(f"multitask group names must be unique: {names}")
        clash = set(names) & {v.name for v in self.recipe_variants}
        if clash:
            raise ValueError(f"{sorted(clash)} names both a multitask group and a recipe variant")
        for group in self.multitask:
            missing = [t for t in group.tasks if t not in self.tasks]
            if missing:
                raise ValueError(
                    f"multitask group {group.name}: {missing} not in finetune.tasks {self.tasks}"
                )
        return self

    @model_validator(mode="after")
    def _task_recipes_name_tasks(self) -> FinetuneSection:
        for task in self.task_recipe:
            if task not in self.tasks:
                raise ValueError(
                    f"task_recipe names task '{task}', which is not in tasks {self.tasks}"
                )
        return self

    @model_validator(mode="after")
    def _selection_metrics_exist(self) -> FinetuneSection:
        for task, metric in self.selection_metric.items():
            if task not in self.tasks:
                raise ValueError(
                    f"selection_metric names task '{task}', which is not in tasks {self.tasks}"
                )
            allowed = TASKS[task].metrics
            if metric not in allowed:
                raise ValueError(
                    f"selection_metric.{task} = '{metric}' is not a metric of {task}; "
                    f"allowed: {', '.join(allowed)}"
                )
        return self

    def metric_for(self, task: str) -> str:
        """The dev metric that selects the grid point for `task`."""
        return self.selection_metric.get(task, TASKS[task].main_metric)


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


ClassificationMetric = Literal["accuracy", "f1", "macro_f1", "micro_f1", "matthews_corr"]
RegressionMetric = Literal["pearson", "spearman"]


class CustomTask(Strict):
    """A sentence (or sentence-pair) classification or regression task from your own data."""

    description: str = ""
    format: Literal["csv", "tsv", "jsonl", "hub"] = Field(
        description="csv (quoted fields allowed) or tsv (tab-separated, no quoting), each with a "
        "header line naming the columns; jsonl (one JSON object a line); hub (a Hugging Face "
        "`datasets` name, needs network)"
    )
    train: str = Field(
        description="files: the training file (relative to the working directory); hub: the "
        "split name, e.g. 'train'"
    )
    dev: str = Field(description="files: the evaluation file; hub: the split, e.g. 'validation'")
    hub_dataset: str | None = Field(None, description="hub: the dataset, e.g. yelp_review_full")
    hub_config: str | None = Field(None, description="hub: the dataset's configuration, if any")
    text: str = Field(description="column (or JSON key) of the text")
    text_pair: str | None = Field(None, description="column of the second text (pair tasks)")
    label: str = Field(description="column of the label")
    labels: list[str] = Field(
        default_factory=list,
        description="classification: every label value as written in the data (JSON numbers by "
        "their text, e.g. '1'); class ids follow this order; leave empty for regression",
    )
    regression: bool = Field(False, description="the label is a number to predict (MSE loss)")
    metrics: list[ClassificationMetric | RegressionMetric] = Field(
        default_factory=list,
        description="dev metrics, the first selects the grid point; default: accuracy and "
        "macro_f1 (classification) or pearson and spearman (regression); f1 is the second "
        "label's F1 (two labels only)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CustomTask:
        if (self.format == "hub") != (self.hub_dataset is not None):
            raise ValueError("hub_dataset is needed with format = 'hub', and only then")
        if self.regression and self.labels:
            raise ValueError("a regression task has no labels; drop labels or regression")
        if not self.regression and len(set(self.labels)) < 2:
            raise ValueError(
                "list the label values (at least two, each once) in labels, or set "
                "regression = true"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels repeat a value: {self.labels}")
        wrong = [
            m
            for m in self.metrics
            if (m in ("pearson", "spearman")) != self.regression
            or (m == "f1" and len(self.labels) != 2)
        ]
        if wrong:
            kind = "regression" if self.regression else f"{len(self.labels)}-label classification"
            raise ValueError(f"metrics {wrong} do not apply to {kind}")
        return self

    def all_metrics(self) -> tuple[str, ...]:
        default = ("pearson", "spearman") if self.regression else ("accuracy", "macro_f1")
        return tuple(self.metrics) or default


class DataSection(Strict):
    """Where the pre-training corpus, the tokenizer and the fine-tuning data come from."""

    corpus: str = Field(
        "synthetic",
        description="pre-training corpus: 'synthetic', a text file / folder of .txt files, or "
        "'hub:<dataset>' (a Hugging Face dataset; needs network; see corpus_hub)",
    )
    corpus_format: Literal["bert", "paragraphs", "wikitext"] = Field(
        "bert",
        description="bert: one sentence a line, blank line between documents; paragraphs: one "
        "document a file, blank-line-separated paragraphs as segments; wikitext: raw "
        "WikiText files (' = Title = ' starts an article, each other line a paragraph)",
    )
    corpus_hub: HubCorpus = HubCorpus()
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
    # Before `tasks` (fields validate in order): registering them makes their names known.
    custom_tasks: dict[Annotated[str, Field(pattern=NAME_PATTERN)], CustomTask] = Field(
        default_factory=dict,
        description="your own classification/regression tasks, by name; list them in "
        "finetune.tasks like any other",
    )
    tasks: dict[TaskName, TaskData] = Field(
        default_factory=dict, description="per-task data settings, by task name"
    )

    @field_validator("custom_tasks", mode="before")
    @classmethod
    def _declare(cls, custom: Any) -> Any:
        if isinstance(custom, dict):
            DECLARED.update(k for k in custom if isinstance(k, str))
        return custom

    @field_validator("custom_tasks")
    @classmethod
    def _register(cls, custom: dict[str, CustomTask]) -> dict[str, CustomTask]:
        for name, task in custom.items():
            definition = task.model_dump(mode="json") | {"metrics": list(task.all_metrics())}
            register_custom_task(name, definition)  # ValueError for a built-in task's name
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

    @model_validator(mode="before")
    @classmethod
    def _forget_declared_tasks(cls, raw: Any) -> Any:
        DECLARED.clear()  # data.custom_tasks of an earlier matrix in this process
        return raw


def _unique_names(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")


def _canonical(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _divisor_near(n: int, k: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), d))
