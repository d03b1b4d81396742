"""Plan-time checks of what only a resolved trial can tell: a recipe that cannot apply to its
model or grid, a head its task's family does not take, a vocabulary or batch layout that cannot
work. Each fails `bertabl plan` (and `run`, before anything starts) naming the matrix key."""

from __future__ import annotations

from bertabl.errors import MatrixError, UserError
from bertabl.matrix.models import ModelSource
from bertabl.matrix.schema import Matrix
from bertabl.tasks.spec import EXTRA_HEADS, TaskSpec
from bertabl.trial.finetune import Recipe
from bertabl.trial.layout import batch_layout
from bertabl.trial.pretrain import PretrainConfig


def check_vocab_size(config: PretrainConfig, matrix: Matrix, origin: str, row: str) -> None:
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


def check_batch_layout(config: PretrainConfig, matrix: Matrix, origin: str, row: str) -> None:
    """Catch a batch that cannot split over workers/micro-batches now, not when a trial starts."""
    res = matrix.resources.stage("pretrain")
    keys = res.keys
    try:
        batch_layout(
            config.batch_size,
            res.workers,
            res.micro_batch_size,
            workers_key=keys["workers"],
            micro_key=keys["micro_batch_size"],
        )
    except UserError as err:
        raise MatrixError(f"{origin}: {err} (row {row})") from None


def check_head(head: str, spec: TaskSpec, origin: str) -> None:
    """The head must be one the task's family takes (finetune/families/)."""
    if head == "linear" or head in EXTRA_HEADS[spec.family]:
        return
    wanted = "classification and SQuAD" if head == "bilstm" else "tagging (NER)"
    raise MatrixError(
        f"{origin}: finetune.head: head '{head}' is for {wanted} tasks; task {spec.name} is "
        f"{spec.family}"
    )


def check_model(model: ModelSource, spec: TaskSpec, origin: str) -> None:
    """A task that reads [CLS] cannot use a causal (left-to-right) model: its [CLS] has
    attended only to itself."""
    if model.causal and spec.family == "multiple_choice":
        raise MatrixError(
            f"{origin}: task {spec.name}: multiple choice scores each candidate from its [CLS], "
            "which a left-to-right model's causal attention leaves blind to the input; drop the "
            "ltr row or the task"
        )


def check_encoder(model: ModelSource, head: str, recipe: Recipe, origin: str) -> None:
    """bertabl's own heads (BiLSTM, pooling) sit on a BERT encoder; other encoders (RoBERTa,
    ELECTRA, DistilBERT, ...) fine-tune with transformers' heads (head = "linear")."""
    model_type = getattr(model, "model_type", None)
    if model_type in (None, "bert"):
        return
    if head == "bilstm" or recipe.pooling != "cls_pooler":
        what = "head = 'bilstm'" if head == "bilstm" else f"pooling = '{recipe.pooling}'"
        raise MatrixError(
            f"{origin}: {what} needs a BERT encoder; {getattr(model, 'spec', model.id)} is a "
            f"{model_type} model: use head = 'linear' and the default pooling"
        )


def check_recipe(
    recipe: Recipe,
    head: str,
    model: ModelSource,
    task: str,
    variant: str,
    smallest_batch: int,
    origin: str,
) -> None:
    """Recipe keys that cannot apply to this model, head or grid fail at plan time."""
    where = f"{origin}: finetune.recipe" + (f" (recipe variant {variant})" if variant else "")
    layers = model.layers
    if layers is not None and recipe.freeze_layers > layers:
        raise MatrixError(
            f"{where}: freeze_layers = {recipe.freeze_layers} but the model has {layers} "
            f"layers; use at most {layers}"
        )
    pooling = recipe.pooling if recipe.pooling != "cls_pooler" else None
    if pooling and head != "linear":
        raise MatrixError(
            f"{where}: pooling = '{pooling}' replaces the linear head's pooling; task {task} "
            f"uses head = '{head}'. Drop one of the two"
        )
    if pooling == "cls" and model.causal:
        raise MatrixError(
            f"{where}: pooling = 'cls' on a left-to-right model: its [CLS] has attended only to "
            "itself; use mean, attention or cnn (cls_pooler reads the last token)"
        )
    if recipe.grad_accumulation > smallest_batch:
        raise MatrixError(
            f"{where}: grad_accumulation = {recipe.grad_accumulation} micro-batches exceeds "
            f"finetune.grid.batch_size {smallest_batch}; use at most {smallest_batch}"
        )
