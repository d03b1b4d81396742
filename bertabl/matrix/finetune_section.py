"""The `[finetune]` section: tasks, the grid and restarts, each task's own protocol, the
fine-tuning recipe and its rows, heads, multi-task groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from bertabl.matrix.fields import (
    NAME_PATTERN,
    PositiveFloat,
    PositiveInt,
    TaskNames,
    check_axis,
    named,
)
from bertabl.tasks.spec import UNGROUPED_FAMILIES
from bertabl.trial.finetune import FeatureMode, Head, Recipe, TagScheme
from bertabl.trial.strict import Strict


class HeadOverrides(Strict):
    """Fine-tuning settings a variant (row) may change: the head on top of the encoder."""

    head: Head | None = Field(
        None, description="linear (paper), bilstm (Table 5's + BiLSTM), features (Table 7)"
    )
    bilstm_hidden: int | None = Field(None, ge=0, description="BiLSTM size; 0 = model hidden")
    features: FeatureMode | None = Field(None, description="frozen features (head = features)")


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


class RowFinetune(HeadOverrides):
    """How a pre-training row is fine-tuned: its head, and which recipe rows it is crossed with."""

    recipes: list[str] | None = Field(
        None,
        min_length=1,
        description="the recipe rows (finetune.recipe_variants names, recipe_axes combinations "
        "such as 'layer_decay=0.8') and multi-task groups this row is crossed with; default: "
        "all (e.g. an untrained control with the plain recipe only: recipes = ['bert'])",
    )


class RecipeVariant(HeadOverrides):
    """A named fine-tuning recipe: one report row per pre-training row."""

    name: str = Field(pattern=NAME_PATTERN, description="id used in row names")
    label: str | None = Field(None, description="row label in reports; defaults to name")
    recipe: RecipeOverrides = Field(  # type: ignore[valid-type]
        RecipeOverrides(), description="recipe keys this row changes, e.g. layer_decay = 0.8"
    )


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


class GridOverrides(Strict):
    """Grid lists to replace for one task (the others come from finetune.grid)."""

    batch_size: list[PositiveInt] | None = Field(None, min_length=1)
    learning_rate: list[PositiveFloat] | None = Field(None, min_length=1)
    epochs: list[PositiveInt] | None = Field(None, min_length=1)


class TaskSettings(Strict):
    """One task's own fine-tuning protocol: what it changes of the finetune section's (the
    paper fine-tunes SQuAD at 384 tokens with one learning rate, GLUE over four)."""

    max_seq_len: int | None = Field(None, ge=8, le=4096)
    doc_stride: PositiveInt | None = Field(
        None,
        description="span QA: tokens between the starts of a long context's windows (BERT: 128 "
        "at length 384); default min(128, max_seq_len / 2)",
    )
    grid: GridOverrides = GridOverrides()
    restarts: PositiveInt | None = None
    eval_batch_size: PositiveInt | None = None
    recipe: RecipeOverrides = Field(  # type: ignore[valid-type]
        RecipeOverrides(), description="recipe keys changed for this task (recipe rows win)"
    )
    document_context: bool | None = Field(
        None,
        description="tagging: encode each sentence with as much of its document around it as "
        "fits in max_seq_len, scoring only the sentence's own tokens (the paper's 'maximal "
        "document context' for CoNLL-2003); default: the sentence alone",
    )
    tag_scheme: TagScheme | None = Field(
        None,
        description="tagging: the labels it trains on; iob1 (default): CoNLL-2003's own, as "
        "transformers' run_ner trains on the files; iob2: every entity opens with B-. Scores "
        "are entity-level either way",
    )


@dataclass(frozen=True)
class TaskProtocol:
    """A task's resolved fine-tuning protocol: finetune.* with task_settings.<task> applied."""

    grid: Grid
    restarts: int
    max_seq_len: int
    doc_stride: int | None
    eval_batch_size: int
    document_context: bool
    tag_scheme: TagScheme | None  # None: the default (tagging tasks only)


class MultiTaskGroup(Strict):
    """Tasks fine-tuned together: one shared encoder, a head per task, one trial per grid point
    and restart. Each task keeps its own dev metric and grid-point selection."""

    name: str = Field(pattern=NAME_PATTERN, description="id used in row names")
    label: str | None = Field(None, description="row label; default: multi-task (a + b)")
    tasks: TaskNames = Field(
        min_length=2, description="sentence(-pair) classification/regression tasks"
    )
    recipes: list[str] | None = Field(
        None,
        min_length=1,
        description="the recipe rows (finetune.recipe_variants names, recipe_axes "
        "combinations) this group is crossed with; default: every one",
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
    group_by_length: bool | None = Field(
        None,
        description="batch examples of similar length (less padding; order stays random); "
        "default: on, except for multiple choice (see tasks/spec.py UNGROUPED_FAMILIES)",
    )
    recipe: Recipe = Field(Recipe(), description="the fine-tuning recipe of every trial")
    task_settings: dict[str, TaskSettings] = Field(
        default_factory=dict,
        description="task -> its own max_seq_len, doc_stride, grid, restarts, eval_batch_size, "
        "recipe keys, document_context, tag_scheme (the scale preset sets the paper's per-task "
        "protocol)",
    )
    recipe_variants: Annotated[list[RecipeVariant], named("recipe variant")] = Field(
        default_factory=list,
        description="named recipes; each becomes a report row for every pre-training row",
    )
    recipe_axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="recipe key -> values; each combination of the product is a recipe row "
        "(crossed with recipe_variants when both are given)",
    )
    multitask: Annotated[list[MultiTaskGroup], named("multitask group")] = Field(
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
            check_axis(f"recipe_axes.{key}", values)
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

    def groups_by_length(self, family: str) -> bool:
        """Whether `family`'s trials batch by length: this section's setting, else the family's
        default."""
        if self.group_by_length is not None:
            return self.group_by_length
        return family not in UNGROUPED_FAMILIES

    def protocol(self, task: str) -> TaskProtocol:
        """`task`'s grid, restarts and lengths: this section's, with task_settings applied."""
        own = self.task_settings.get(task, TaskSettings())
        grid = self.grid.model_copy(update=own.grid.model_dump(exclude_none=True))

        def pick(key: str):
            value = getattr(own, key)
            return getattr(self, key) if value is None else value

        return TaskProtocol(
            grid=grid,
            restarts=pick("restarts"),
            max_seq_len=pick("max_seq_len"),
            doc_stride=own.doc_stride,
            eval_batch_size=pick("eval_batch_size"),
            document_context=bool(own.document_context),
            tag_scheme=own.tag_scheme,
        )
