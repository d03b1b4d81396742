"""Field types and checks the matrix sections share: names, positive numbers, unique lists."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


def unique_names(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")


def named(what: str) -> AfterValidator:
    """A list of named items whose names are unique (`what` names them in the error)."""

    def check(items: list) -> list:
        unique_names([item.name for item in items], what)
        return items

    return AfterValidator(check)


def distinct(tasks: list[str]) -> list[str]:
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks repeat a name: {tasks}")
    return tasks


TaskNames = Annotated[list[str], AfterValidator(distinct)]


def check_axis(what: str, values: list[Any]) -> None:
    """An axis lists at least one value, each once."""
    if not values:
        raise ValueError(f"{what} has no values; give at least one")
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise ValueError(f"{what} repeats a value: {values}")
