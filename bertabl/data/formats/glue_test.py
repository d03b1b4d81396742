"""GLUE's test splits. Two kinds, never mixed up:

- labeled test sets, where the original distribution has them: MRPC's `msr_paraphrase_test.txt`
  (the MSR corpus's own test file, which GLUE's download script leaves in the MRPC folder; same
  columns as train.tsv) and the STS Benchmark's `sts-test.tsv` / `sts-test.csv` (its original
  layout: genre, file, year, id, score, sentence1, sentence2, then columns that are ignored;
  tab-separated in both spellings, no header). These are scored.
- GLUE's own test sets (`test.tsv`; MNLI `test_matched.tsv` / `test_mismatched.tsv`): no labels.
  They are predicted only, for the GLUE server's submission files.
"""

from __future__ import annotations

import math
from pathlib import Path

from bertabl.data.formats._text import read_lines
from bertabl.data.formats.glue import GLUE_TASKS, _task_key, parse_glue
from bertabl.errors import DataError

_LABELED = {"mrpc": ("msr_paraphrase_test.txt",), "stsb": ("sts-test.tsv", "sts-test.csv")}
_UNLABELED = {
    "mnli": {"glue_test": "test_matched.tsv", "glue_test_mismatched": "test_mismatched.tsv"}
}
_STS_LAYOUT = "the STS Benchmark layout: genre, file, year, id, score, sentence1, sentence2"


def _candidates(task: str, folder: Path, name: str) -> list[Path]:
    spec = GLUE_TASKS[_task_key(task)]
    return [Path(folder) / name, Path(folder) / spec.dirname / name]


def labeled_test_file(task: str, folder: Path) -> Path | None:
    """The task's labeled test file in `folder` (the task folder or the GLUE root), if any."""
    for name in _LABELED.get(task, ()):
        for path in _candidates(task, folder, name):
            if path.is_file():
                return path
    return None


def read_labeled_test(task: str, path: Path) -> list[dict]:
    """Examples `{"text_a", "text_b", "label"}` of a labeled test file."""
    if task == "mrpc":
        return parse_glue(GLUE_TASKS["mrpc"], path)
    examples = []
    for n, line in enumerate(read_lines(path, _STS_LAYOUT), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 7:
            raise DataError(f"{path} line {n}: {len(fields)} fields; expected {_STS_LAYOUT}")
        try:
            score = float(fields[4])
        except ValueError:
            score = math.nan
        if not 0.0 <= score <= 5.0:
            raise DataError(f"{path} line {n}: score {fields[4]!r} is not in [0, 5]")
        examples.append({"text_a": fields[5], "text_b": fields[6], "label": score})
    if not examples:
        raise DataError(f"{path}: no examples; expected {_STS_LAYOUT}")
    return examples


def unlabeled_test_files(task: str, folder: Path) -> dict[str, Path]:
    """GLUE's unlabeled test files of the task that are in `folder`, by split name."""
    found = {}
    for split, name in _UNLABELED.get(task, {"glue_test": "test.tsv"}).items():
        for path in _candidates(task, folder, name):
            if path.is_file():
                found[split] = path
                break
    return found


def read_unlabeled_test(task: str, path: Path) -> list[dict]:
    """Examples `{"id", "text_a", "text_b", "label"}` of a GLUE test file: `id` is its first
    column (what the server's submission files name), `label` a placeholder (0)."""
    spec = GLUE_TASKS[_task_key(task)]
    lines = read_lines(path, f"GLUE's {spec.dirname} test file (a header line, then examples)")
    if not lines:
        raise DataError(f"{path}: empty file; expected a header line and one example a line")
    columns = lines[0].split("\t")
    wanted = [c for c in (spec.text_a, spec.text_b) if c]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(f"{path} line 1: no column(s) {', '.join(missing)}; found {columns}")
    i_a = columns.index(spec.text_a)
    i_b = columns.index(spec.text_b) if spec.text_b else None
    placeholder = 0.0 if spec.labels == "regression" else 0
    examples = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"{path} line {n}: {len(fields)} fields, the header names {len(columns)}"
            )
        text_b = fields[i_b] if i_b is not None else None
        examples.append(
            {"id": fields[0], "text_a": fields[i_a], "text_b": text_b, "label": placeholder}
        )
    return examples
