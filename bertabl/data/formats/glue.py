"""GLUE tasks in their original GLUE-distribution TSV layouts (`glue_data/<Task>/<split>.tsv`).

GLUE TSVs are not CSV: fields are never quoted, and a field may start with a `"` that is never
closed (MRPC, QQP). So lines are split on tabs only, and quote characters stay in the text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bertabl.data.formats._text import read_lines
from bertabl.errors import DataError

_TRAIN_DEV = {"train": "train.tsv", "dev": "dev.tsv"}


@dataclass(frozen=True)
class GlueTaskSpec:
    """Where a GLUE task's files are and which columns hold its text and label.

    Columns are named as in the file's header line; `columns` names them for headerless files.
    `labels` lists the label strings in label-id order (as in the Hugging Face `glue` dataset).
    """

    dirname: str
    files: Mapping[str, str]
    header: bool
    text_a: str
    text_b: str | None
    label: str
    labels: tuple[str, ...] | Literal["regression"]
    columns: tuple[str, ...] | None = None
    aliases: Mapping[str, str] | None = None


_NLI2 = ("entailment", "not_entailment")
_BINARY = ("0", "1")
_SCORE = "regression"  # STS-B: a similarity in [0, 5]
_MNLI_FILES = {
    "train": "train.tsv",
    "dev_matched": "dev_matched.tsv",
    "dev_mismatched": "dev_mismatched.tsv",
}

# name: (folder, files, header, text_a, text_b, label, labels, ...). MNLI's train.tsv has 12
# columns (label1, gold_label), its dev files 16 (label1..label5, gold_label); reading columns by
# header name covers both. CoLA's files have no header: `columns` names them.
GLUE_TASKS: dict[str, GlueTaskSpec] = {
    "cola": GlueTaskSpec(
        "CoLA", _TRAIN_DEV, False, "sentence", None, "label", _BINARY,
        columns=("source", "label", "mark", "sentence"),
    ),
    "sst2": GlueTaskSpec("SST-2", _TRAIN_DEV, True, "sentence", None, "label", _BINARY),
    "mrpc": GlueTaskSpec("MRPC", _TRAIN_DEV, True, "#1 String", "#2 String", "Quality", _BINARY),
    "stsb": GlueTaskSpec("STS-B", _TRAIN_DEV, True, "sentence1", "sentence2", "score", _SCORE),
    "qqp": GlueTaskSpec("QQP", _TRAIN_DEV, True, "question1", "question2", "is_duplicate", _BINARY),
    "mnli": GlueTaskSpec(
        "MNLI", _MNLI_FILES, True, "sentence1", "sentence2", "gold_label",
        ("entailment", "neutral", "contradiction"), aliases={"dev": "dev_matched"},
    ),
    "qnli": GlueTaskSpec("QNLI", _TRAIN_DEV, True, "question", "sentence", "label", _NLI2),
    "rte": GlueTaskSpec("RTE", _TRAIN_DEV, True, "sentence1", "sentence2", "label", _NLI2),
    "wnli": GlueTaskSpec("WNLI", _TRAIN_DEV, True, "sentence1", "sentence2", "label", _BINARY),
}  # fmt: skip


def _task_key(task: str) -> str:
    """Accept the HF names (`sst2`) and the GLUE folder names (`SST-2`)."""
    key = task.lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise DataError(f"unknown GLUE task {task!r}; known tasks: {', '.join(GLUE_TASKS)}")
    return key


def _layout(spec: GlueTaskSpec) -> str:
    return f"the GLUE layout {spec.dirname}/{{{', '.join(spec.files.values())}}}"


def glue_file(task: str, folder: Path, split: str) -> Path:
    """The TSV holding `split` of `task`; `folder` is the task folder or the GLUE root above it."""
    spec = GLUE_TASKS[_task_key(task)]
    split = (spec.aliases or {}).get(split, split)
    if split not in spec.files:
        known = list(spec.files) + list(spec.aliases or {})
        raise DataError(
            f"GLUE task {task!r} has no split {split!r}; known splits: "
            f"{', '.join(known)} (test splits have no labels)"
        )
    name = spec.files[split]
    folder = Path(folder)
    for candidate in (folder / name, folder / spec.dirname / name):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{folder / name}: file not found; expected {_layout(spec)} "
        f"(pass the {spec.dirname} folder, or the GLUE folder that contains it)"
    )


def _describe(columns: list[str] | tuple[str, ...]) -> str:
    if len(columns) <= 6:
        return ", ".join(columns)
    return f"{columns[0]}, {columns[1]}, ..., {columns[-1]}"  # MNLI dev: 16 columns


def read_glue(task: str, folder: Path, split: str) -> list[dict]:
    """Examples `{"text_a", "text_b", "label"}` of one split; labels as ids (float for STS-B)."""
    return parse_glue(GLUE_TASKS[_task_key(task)], glue_file(task, folder, split))


def parse_glue(spec: GlueTaskSpec, path: Path) -> list[dict]:
    """The examples of one labeled file in `spec`'s layout (GLUE's, or MRPC's MSR original)."""
    lines = read_lines(path, _layout(spec))
    if spec.header:
        if not lines:
            raise DataError(f"{path}: empty file; expected a header line and one example a line")
        columns = lines[0].split("\t")
        body, first_line = lines[1:], 2
        wanted = [c for c in (spec.text_a, spec.text_b, spec.label) if c is not None]
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise DataError(
                f"{path} line 1: header lacks column(s) {', '.join(map(repr, missing))}; "
                f"found {_describe(columns)} (is this the {spec.dirname} file?)"
            )
    else:
        assert spec.columns is not None
        columns, body, first_line = list(spec.columns), lines, 1
    # Trailing blank lines are harmless; a blank line mid-file fails the column check below.
    while body and not body[-1].strip():
        body.pop()
    if not body:
        raise DataError(
            f"{path}: no examples; expected one tab-separated example a line ({_describe(columns)})"
        )

    i_a = columns.index(spec.text_a)
    i_b = columns.index(spec.text_b) if spec.text_b is not None else None
    i_label = columns.index(spec.label)
    label_ids = {} if spec.labels == "regression" else {s: i for i, s in enumerate(spec.labels)}
    examples = []
    for n, line in enumerate(body, first_line):
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"{path} line {n}: expected {len(columns)} tab-separated columns "
                f"({_describe(columns)}), found {len(fields)}"
            )
        raw = fields[i_label]
        label: int | float
        if spec.labels == "regression":
            try:
                label = float(raw)
            except ValueError:
                label = math.nan
            if not 0.0 <= label <= 5.0:  # also rejects NaN
                raise DataError(
                    f"{path} line {n}: expected a similarity score in [0, 5] in "
                    f"column {spec.label!r}, found {raw!r}"
                )
        elif raw in label_ids:
            label = label_ids[raw]
        else:
            raise DataError(
                f"{path} line {n}: unknown label {raw!r} in column {spec.label!r}; "
                f"expected one of {', '.join(spec.labels)}"
            )
        examples.append(
            {
                "text_a": fields[i_a],
                "text_b": fields[i_b] if i_b is not None else None,
                "label": label,
            }
        )
    return examples
