"""Tasks defined in the matrix (`data.custom_tasks.<name>`): any sentence or sentence-pair
classification or regression dataset, from CSV / TSV / JSON Lines files or the Hugging Face Hub.

Rows come out as every other task's: `text_a`, `text_b` (pair tasks), `label` (a class id in
the order of the declared `labels`, or a float for regression). Anything wrong with the data is
a DataError naming the file and line (or the Hub split and row): a column the file lacks, a
label outside the declared set, a regression label that is not a number, an empty split.

The task's identity (what enters trial ids) is its definition (columns, labels, metrics) plus
the SHA-256 of its files, or the Hub dataset, configuration and splits; the file paths are its
location, which is not.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from bertabl.data.fingerprints import file_sha256
from bertabl.data.formats._text import read_text
from bertabl.data.hub import load_hub
from bertabl.errors import DataError
from bertabl.tasks import evaluate_metric
from bertabl.tasks.spec import TaskSpec
from bertabl.trial.data import DataRef
from bertabl.trial.strict import Strict

ClassificationMetric = Literal["accuracy", "f1", "macro_f1", "micro_f1", "matthews_corr"]
RegressionMetric = Literal["pearson", "spearman"]
BUILT_IN_METRICS = (*get_args(ClassificationMetric), *get_args(RegressionMetric))


def _metric_name(entry: str) -> str:
    # One error line for a wrong entry (a union of Literals and a pattern would give three).
    if entry in BUILT_IN_METRICS or (evaluate_metric.is_evaluate(entry) and len(entry) > 9):
        return entry
    raise ValueError(
        f"'{entry}' is not a metric; use one of {', '.join(BUILT_IN_METRICS)} or "
        "'evaluate:<path/to/metric.py or evaluate Hub name>'"
    )


# A built-in metric (finetune/metrics.py) or any Hugging Face `evaluate` metric: a local module
# file (offline) or a Hub name. Editors get the names to complete, and the pattern.
MetricName = Annotated[
    str,
    AfterValidator(_metric_name),
    WithJsonSchema(
        {"anyOf": [{"enum": list(BUILT_IN_METRICS)}, {"type": "string", "pattern": "^evaluate:.+"}]}
    ),
]


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
    test: str | None = Field(
        None,
        description="optional labeled test file (hub: split), scored only for the grid point "
        "selected on dev, never used to select",
    )
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
    metrics: list[MetricName] = Field(
        default_factory=list,
        description="dev metrics, the first selects the grid point (higher is better); default: "
        "accuracy and macro_f1 (classification) or pearson and spearman (regression); f1 is "
        "the second label's F1 (two labels only); 'evaluate:<path/to/metric.py or Hub name>' "
        "is a Hugging Face evaluate metric, keyed by its name (the file's stem), given class "
        "ids (classification) or numbers (regression)",
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
            if not evaluate_metric.is_evaluate(m)
            and (
                (m in ("pearson", "spearman")) != self.regression
                or (m == "f1" and len(self.labels) != 2)
            )
        ]
        if wrong:
            kind = "regression" if self.regression else f"{len(self.labels)}-label classification"
            raise ValueError(f"metrics {wrong} do not apply to {kind}")
        keys = [evaluate_metric.metric_key(m) for m in self.metrics]
        bad = [
            m for m in self.metrics if not evaluate_metric.KEY.match(evaluate_metric.metric_key(m))
        ]
        if bad:
            raise ValueError(f"metrics {bad}: an evaluate metric's name must be a word")
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"metrics name {repeated} twice; each key once")
        return self

    def all_metrics(self) -> tuple[str, ...]:
        default = ("pearson", "spearman") if self.regression else ("accuracy", "macro_f1")
        return tuple(self.metrics) or default

    def definition(self) -> dict[str, Any]:
        """What a trial carries of this task (in its data identity): a Ray worker has not seen
        the matrix that defined it."""
        return self.model_dump(mode="json") | {"metrics": list(self.all_metrics())}


def custom_spec(name: str, definition: dict[str, Any]) -> TaskSpec:
    """The TaskSpec of a matrix-defined task, from its `definition` (CustomTask.definition(),
    or the one in its data identity); an evaluate metric is listed by its key."""
    regression = definition["regression"]
    what = "regression" if regression else "classification"
    return TaskSpec(
        name=name,
        description=definition.get("description") or f"{name} ({what}, defined in the matrix)",
        family="regression" if regression else "classification",
        source="custom",
        pair=definition["text_pair"] is not None,
        num_labels=1 if regression else len(definition["labels"]),
        metrics=tuple(evaluate_metric.metric_key(m) for m in definition["metrics"]),
        labels=tuple(definition["labels"]),
        custom=definition,
    )


SPLITS = ("train", "dev")
# The definition keys that decide what a trial computes (train/dev are paths for files).
_IDENTITY_KEYS = (
    "format",
    "hub_dataset",
    "hub_config",
    "text",
    "text_pair",
    "label",
    "labels",
    "regression",
    "metrics",
)


def task_data(definition: dict[str, Any], slices: dict[str, int]) -> DataRef:
    """The data of a custom task; local files are read and checked now, so a bad file fails
    `bertabl plan` rather than a trial."""
    identity = {
        "source": "custom",
        "definition": {k: definition[k] for k in _IDENTITY_KEYS},
        **slices,
    }
    metrics, paths = definition["metrics"], {}
    if any(evaluate_metric.is_evaluate(m) for m in metrics):
        modules, paths["evaluate"] = evaluate_metric.identity_and_location(metrics)
        identity["evaluate"] = modules
        identity["definition"]["metrics"] = [evaluate_metric.identity_entry(m) for m in metrics]
    splits = [*SPLITS, *(["test"] if definition.get("test") else [])]
    if definition["format"] == "hub":
        identity["splits"] = {s: definition[s] for s in splits}
        return DataRef(identity=identity, location=paths)
    paths |= {s: str(Path(definition[s]).resolve()) for s in splits}
    identity["sha256"] = {}
    for split in splits:
        path = Path(paths[split])
        if not path.is_file():
            raise DataError(f"{path}: file not found (the {split} file); check the path")
        identity["sha256"][split] = file_sha256(path).hex()[:16]
    data = DataRef(identity=identity, location=paths)
    for split in splits:
        read_split(split, data)
    return data


def read_split(split: str, data: DataRef) -> list[dict[str, Any]]:
    """The split's examples {"text_a", "text_b", "label"} (text_b None for single sentences)."""
    identity = data.identity
    definition = identity["definition"]
    if definition["format"] == "hub":
        name, hub_split = definition["hub_dataset"], identity["splits"][split]
        where = f"{name} ({hub_split} split)"
        records = _hub_records(name, definition["hub_config"], hub_split, where)
    else:
        path = Path(data.location[split])
        where = str(path)
        wanted = [definition[k] for k in ("text", "text_pair", "label") if definition[k]]
        records = _file_records(path, definition["format"], wanted)
    rows = [_example(record, definition, f"{where}{place}") for place, record in records]
    if not rows:
        raise DataError(f"{where}: no examples in the {split} split; it needs at least one")
    return rows


def _example(record: dict[str, Any], definition: dict[str, Any], where: str) -> dict[str, Any]:
    def field(key: str) -> Any:
        if key not in record:
            raise DataError(
                f"{where}: no column '{key}'; the columns are: {', '.join(map(str, record))}"
                " (data.custom_tasks: text / text_pair / label name them)"
            )
        value = record[key]
        if value is None:
            raise DataError(f"{where}: column '{key}' is empty")
        return value

    text_a = str(field(definition["text"]))
    text_b = str(field(definition["text_pair"])) if definition["text_pair"] else None
    value = field(definition["label"])
    text = str(value).strip() if not isinstance(value, bool) else str(value).lower()
    if definition["regression"]:
        try:
            label: float | int = float(text)
        except ValueError:
            raise DataError(f"{where}: label '{value}' is not a number (regression)") from None
    else:
        labels = definition["labels"]
        if text not in labels:
            raise DataError(
                f"{where}: label '{text}' is not one of the declared labels "
                f"{', '.join(labels)}; add it to labels or fix the data"
            )
        label = labels.index(text)
    return {"text_a": text_a, "text_b": text_b, "label": label}


def _file_records(path: Path, fmt: str, wanted: list[str]):
    """Yield (" line N", record) for each example of a CSV / TSV / JSON Lines file; a CSV/TSV
    header without a `wanted` column fails at line 1."""
    text = read_text(path, {"csv": "CSV", "tsv": "TSV", "jsonl": "JSON Lines"}[fmt])
    if fmt == "jsonl":
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, one a line")
            yield f" line {number}", record
        return
    # TSV: tabs separate and quotes are text (as in GLUE's files); CSV: RFC 4180 quoting.
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    reader = csv.reader(io.StringIO(text, newline=""), **options)
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file; expected a header line naming the columns")
    for column in wanted:
        if column not in header:
            raise DataError(
                f"{path} line 1: no column '{column}'; the columns are: {', '.join(header)} "
                "(data.custom_tasks: text / text_pair / label name them)"
            )
    for row in reader:
        if not row:  # a blank line
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path} line {reader.line_num}: {len(row)} fields, but the header names "
                f"{len(header)}"
            )
        yield f" line {reader.line_num}", dict(zip(header, row, strict=True))


def _hub_records(name: str, config: str | None, split: str, where: str):
    table = load_hub(name, config, split)
    for index, record in enumerate(table):
        yield f" row {index}", record
