"""SQuAD v1.1 and v2.0 in the official JSON format (`data[].paragraphs[].qas[]`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertabl.data.formats._text import read_text
from bertabl.errors import DataError

_LAYOUT = "the official SQuAD JSON (e.g. dev-v1.1.json, train-v2.0.json)"


class _Malformed(Exception):
    """A structural problem at a JSON path; read_squad adds the file name."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


def load_squad_json(path: Path) -> list:
    """The file's `data` list as-is (the input the official evaluation scripts expect)."""
    text = read_text(path, _LAYOUT)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path} line {e.lineno} column {e.colno}: invalid JSON ({e.msg}); expected {_LAYOUT}"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise DataError(
            f"{path}: top level: expected an object with a 'data' list; expected {_LAYOUT}"
        )
    return obj["data"]


_KIND_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _type_name(value: Any) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def _get(obj: Any, key: str, where: str, kind: type) -> Any:
    if not isinstance(obj, dict):
        raise _Malformed(where, f"expected an object, found {_type_name(obj)}")
    if key not in obj:
        raise _Malformed(where, f"missing {key!r}")
    value = obj[key]
    # bool is an int subclass: `"answer_start": true` must not pass as offset 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Malformed(
            f"{where}.{key}", f"expected {_KIND_NAMES[kind]}, found {_type_name(value)}"
        )
    return value


def _question(qa: Any, where: str, title: str, context: str) -> dict:
    qid = _get(qa, "id", where, str)
    question = _get(qa, "question", where, str)
    answers = _get(qa, "answers", where, list)
    impossible = qa.get("is_impossible", False)  # absent in v1.1
    if not isinstance(impossible, bool):
        raise _Malformed(
            f"{where}.is_impossible", f"expected a boolean, found {_type_name(impossible)}"
        )
    if impossible and answers:
        raise _Malformed(
            where, f"question {qid!r} has is_impossible true but {len(answers)} answer(s)"
        )
    if not impossible and not answers:
        raise _Malformed(where, f"question {qid!r} has no answers and is not marked is_impossible")
    texts, starts = [], []
    for m, answer in enumerate(answers):
        at = f"{where}.answers[{m}]"
        text = _get(answer, "text", at, str)
        start = _get(answer, "answer_start", at, int)
        found = context[start : start + len(text)] if start >= 0 else ""
        if found != text:
            raise _Malformed(
                at,
                f"answer_start {start} does not index the answer text of "
                f"question {qid!r}: context has {found!r} there, "
                f"answer is {text!r}",
            )
        texts.append(text)
        starts.append(start)
    return {
        "id": qid,
        "title": title,
        "context": context,
        "question": question,
        "answers": {"text": texts, "answer_start": starts},
        "is_impossible": impossible,
    }


def read_squad(path: Path) -> list[dict]:
    """One dict per question: id, title, context, question, answers{text, answer_start}, ..."""
    data = load_squad_json(path)
    examples: list[dict] = []
    first_seen: dict[str, str] = {}
    try:
        for i, article in enumerate(data):
            at = f"data[{i}]"
            title = _get(article, "title", at, str)
            for j, paragraph in enumerate(_get(article, "paragraphs", at, list)):
                pat = f"{at}.paragraphs[{j}]"
                context = _get(paragraph, "context", pat, str)
                for k, qa in enumerate(_get(paragraph, "qas", pat, list)):
                    qat = f"{pat}.qas[{k}]"
                    example = _question(qa, qat, title, context)
                    # Predictions are keyed by id, so a repeated id would silently lose one.
                    if example["id"] in first_seen:
                        raise _Malformed(
                            qat,
                            f"duplicate question id {example['id']!r} "
                            f"(first at {first_seen[example['id']]})",
                        )
                    first_seen[example["id"]] = qat
                    examples.append(example)
    except _Malformed as e:
        raise DataError(f"{path}: {e}") from None
    return examples
