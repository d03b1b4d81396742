"""Custom tasks' metrics from Hugging Face `evaluate`: `metrics = ["evaluate:<name or path>"]`.

A local module file (or a folder holding `<name>.py`) loads offline; any other name is an
`evaluate` Hub metric (network, the first time). A metric's key in records and reports is its
name: the file's stem, or the Hub name's last part (`evaluate:evaluate-metric/f1` -> `f1`).
Its score is the `compute()` result of that key, or the result's only number.

The metric's identity (part of trial ids) is its name and, for a local module, the SHA-256 of
the file; its path is the data's location. Built-in metric names stay bertabl's own offline,
cross-checked implementations (finetune/metrics.py): `evaluate` is for what they lack.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertabl.data.fingerprints import file_sha256
from bertabl.errors import DataError

PREFIX = "evaluate:"
KEY = re.compile(r"^[A-Za-z][\w-]*$")


def is_evaluate(entry: str) -> bool:
    return entry.startswith(PREFIX)


def metric_key(entry: str) -> str:
    """The record key of a metrics entry: a built-in name as is; an `evaluate:` entry's name
    (purely from the text, so a worker that has no file gives the same key)."""
    if not is_evaluate(entry):
        return entry
    name = entry[len(PREFIX) :].rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".py")


def is_local(source: str) -> bool:
    """A module file or folder here, as `evaluate.load` decides: a .py path or an existing
    path; anything else is a Hub name."""
    return source.endswith(".py") or Path(source).exists()


def module_file(source: str) -> Path:
    """The .py file of a local metric (a folder holds `<folder name>.py`, as on the Hub)."""
    path = Path(source).expanduser().resolve()
    return path / f"{path.name}.py" if path.is_dir() else path


def identity_and_location(entries: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """For each `evaluate:` entry: key -> what decides it (the local file's hash, or the Hub
    name) and key -> the local file. A listed file that is missing is a DataError now, so a
    wrong path fails `bertabl plan` rather than a trial."""
    identity: dict[str, Any] = {}
    location: dict[str, str] = {}
    for entry in entries:
        if not is_evaluate(entry):
            continue
        source, key = entry[len(PREFIX) :], metric_key(entry)
        if not is_local(source):
            identity[key] = {"hub": source}
            continue
        path = module_file(source)
        if not path.is_file():
            raise DataError(
                f"{path}: no evaluate metric module there (metrics entry '{entry}'); give a "
                ".py file, a folder holding <name>.py, or an evaluate Hub metric name"
            )
        identity[key] = {"sha256": file_sha256(path).hex()[:16]}
        location[key] = str(path)
    return identity, location


def identity_entry(entry: str) -> str:
    """A metrics entry as trial ids see it: a local module by its name (the path is where
    it lives, not what it is; its hash stands beside it)."""
    if is_evaluate(entry) and is_local(entry[len(PREFIX) :]):
        return PREFIX + metric_key(entry)
    return entry


@functools.cache
def load(source: str):
    """`evaluate.load(source)`, once per process; a failure is one DataError line."""
    import evaluate  # ~2 s: only trials of tasks that name an evaluate metric pay for it

    try:
        return evaluate.load(source)
    except Exception as err:  # evaluate raises FileNotFoundError, ConnectionError, ImportError
        offline = "" if is_local(source) else "; offline, give a local module file instead"
        raise DataError(
            f"evaluate metric '{source}': could not be loaded ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no message'}){offline}"
        ) from None


def scorer(key: str, identity: dict[str, Any], location: dict[str, str]) -> Callable:
    """A function (predictions, references) -> float for the evaluate metric `key`."""
    module = load(location.get(key) or identity[key]["hub"])

    def score(predictions: Any, references: Any) -> float:
        result = module.compute(predictions=_plain(predictions), references=_plain(references))
        numbers = {k: v for k, v in (result or {}).items() if isinstance(v, int | float)}
        if key in numbers:
            return float(numbers[key])
        if len(numbers) == 1:
            return float(next(iter(numbers.values())))
        raise DataError(
            f"evaluate metric '{key}': compute() returned {sorted(result or {})}; bertabl needs "
            f"a '{key}' score or exactly one number (name the file after the key it returns)"
        )

    return score


def _plain(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def evaluate_keys(definition: dict[str, Any] | None) -> set[str]:
    """The keys of a custom task definition's metrics that `evaluate` computes."""
    return {metric_key(m) for m in (definition or {}).get("metrics", []) if is_evaluate(m)}
