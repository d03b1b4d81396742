"""What a fine-tuning trial runs: its task and data, grid point, restart, head and recipe.

Three shapes: a single-task trial, a multi-task trial (one encoder, a head per task), and a
multi-task trial's view of one task (not run: the shared trial writes its record, and report
cells of multi-task rows select from it). Validated once when the plan is built; trial bodies
read attributes.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_serializer, model_serializer, model_validator

from bertabl.trial.data import DataRef
from bertabl.trial.identity import trial_id
from bertabl.trial.strict import Strict

Head = Literal["linear", "bilstm", "features"]
FeatureMode = Literal[
    "embeddings",
    "second_to_last_hidden",
    "last_hidden",
    "weighted_sum_last_four",
    "concat_last_four",
    "weighted_sum_all",
]
FEATURE_MODES: tuple[str, ...] = get_args(FeatureMode)
Pooling = Literal["cls_pooler", "cls", "mean", "attention", "cnn"]
# How a tagging task's labels are written when it trains (finetune/families/tagging/
# encoding.py). CoNLL-2003's files are IOB1; transformers' run_ner trains on the tags as the
# files give them.
TagScheme = Literal["iob1", "iob2"]
DEFAULT_TAG_SCHEME: TagScheme = "iob1"
# A fine-tuning grid point as the plan and selection name it: (("batch_size", 32),
# ("learning_rate", 2e-5), ("epochs", 3)), in this order (a trial config's `grid_point`).
GridPoint = tuple[tuple[str, Any], ...]
GRID_KEYS = ("batch_size", "learning_rate", "epochs")
# How a fine-tuning trial's examples become batches: 1 = length groups of 50 batches whatever
# the data's size (a small training set was one length-sorted group: nearly the same order
# every epoch and restart), tagging labels always IOB2; 2 = transformers' LengthGroupedSampler
# order (at least 4 groups an epoch) and tagging labels in `tag_scheme`. Part of every trial id,
# so results of an older format are never taken for this one's.
DATA_FORMAT = 2


class Recipe(Strict):
    """How a pre-trained encoder is fine-tuned, beyond the grid: each key is one recipe axis.

    The defaults are BERT's own recipe. `finetune.recipe` sets them for the matrix,
    `finetune.task_settings.<task>.recipe` per task, and `finetune.recipe_variants` names report
    rows.
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
    grad_accumulation: int = Field(
        1,
        ge=1,
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

    def changes(self) -> dict[str, Any]:
        """The keys that differ from BERT's recipe ({} = BERT's recipe), as JSON values."""
        defaults = _BERT_RECIPE
        return {k: v for k, v in self.model_dump(mode="json").items() if v != defaults[k]}


_BERT_RECIPE = Recipe().model_dump(mode="json")
# Keys a fine-tuning config's dump leaves out while they are empty, None or False.
OMITTED_AT_DEFAULT = ("recipe", "doc_stride", "document_context", "checkpoint", "tag_scheme")


class CheckpointRef(Strict):
    """A model a fine-tune starts from that no trial of its run pre-trains (a variant's `from`):
    `identity` is what decides its weights (a folder's content hash; a Hub name and revision),
    `location` where it lives on this machine (a folder; None for the Hub)."""

    identity: dict[str, Any]
    location: str | None

    @property
    def source(self) -> str:
        """What `from_pretrained` loads: the folder, or the Hub name."""
        return self.location or self.identity["name"]

    @property
    def revision(self) -> str | None:
        return self.identity.get("revision")


class MultitaskKey(Strict):
    """What identifies a multi-task group in trial configs: its tasks and sampling temperature."""

    tasks: list[str]
    temperature: float


class _FinetuneCommon(Strict):
    """What every fine-tuning config shape has."""

    stage: Literal["finetune"] = "finetune"
    pretrain_id: str
    pretrain_step: int | None  # fine-tune from the model after this step; None = the final one
    # Set when the model is not pre-trained in this run; then `pretrain_id` is its "ck-" id.
    checkpoint: CheckpointRef | None = None
    task: str
    batch_size: int
    learning_rate: float
    epochs: int
    restart: int
    head: Head
    bilstm_hidden: int
    features: FeatureMode | None
    recipe: Recipe = Recipe()

    @field_serializer("recipe")
    def _recipe_changes(self, recipe: Recipe) -> dict[str, Any]:
        return recipe.changes()

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler) -> dict[str, Any]:
        # Settings added after the first trials ran add no key while they keep their default
        # (BERT's recipe, no checkpoint, ...), so the ids of trials that predate them stand.
        data = handler(self)
        for key in OMITTED_AT_DEFAULT:
            if key in data and not data[key]:
                del data[key]
        return data

    @property
    def id(self) -> str:
        return trial_id("ft", self.model_dump(mode="json"))

    @property
    def grid_point(self) -> GridPoint:
        return tuple((key, getattr(self, key)) for key in GRID_KEYS)

    @property
    def head_key(self) -> tuple[str, int, str | None]:
        """(head, BiLSTM size, feature mode): what a report row's head must match."""
        return self.head, self.bilstm_hidden, self.features


class _TrainingSettings(_FinetuneCommon):
    """The settings of a trial that trains (a view does not)."""

    seed: int  # finetune.seed + restart: data order and head initialisation
    max_seq_len: int
    group_by_length: bool
    warmup_fraction: float
    weight_decay: float
    eval_batch_size: int
    doc_stride: int | None = None  # span QA; None = min(128, max_seq_len / 2)
    document_context: bool = False  # tagging: sentences encoded within their document
    tag_scheme: TagScheme | None = None  # tagging: the labels it trains on; None elsewhere
    data_format: int = DATA_FORMAT

    @property
    def window_stride(self) -> int:
        """Span QA: tokens between window starts (BERT: 128 at length 384; shorter windows
        default to half their length, so that consecutive windows still overlap)."""
        return self.doc_stride or min(128, self.max_seq_len // 2)


class FinetuneTrialConfig(_TrainingSettings):
    """One task fine-tuned on one pre-trained model at one grid point and restart."""

    task_data: DataRef


class MultitaskTrialConfig(_TrainingSettings):
    """Several tasks fine-tuned together on one encoder, a head per task (`task` is "a+b")."""

    task_data: dict[str, DataRef]
    multitask: MultitaskKey

    @property
    def tasks(self) -> list[str]:
        return self.multitask.tasks

    def view(self, task: str) -> TaskViewConfig:
        """The config of `task`'s results of this trial (their record's id is its id)."""
        common = {k: getattr(self, k) for k in _FinetuneCommon.model_fields} | {"task": task}
        return TaskViewConfig(**common, view_of=self.id, multitask=self.multitask)


class TaskViewConfig(_FinetuneCommon):
    """One task's results of a multi-task trial: not run itself."""

    view_of: str
    multitask: MultitaskKey


class TestTrialConfig(Strict):
    """Once a cell's fine-tunes have all settled: its dev-selected grid point's restarts scored
    on the task's test splits ("test", labeled) and predicted on GLUE's unlabeled test sets;
    never used to select. Its trials' kept final weights are what it evaluates."""

    stage: Literal["test"] = "test"
    task: str
    task_data: DataRef
    metric: str  # the dev metric that selects the grid point
    trials: list[str]  # the cell's fine-tuning trials (every grid point and restart)
    splits: list[str]

    @property
    def id(self) -> str:
        return trial_id("te", self.model_dump(mode="json"))


FinetuneConfig = FinetuneTrialConfig | MultitaskTrialConfig | TaskViewConfig
