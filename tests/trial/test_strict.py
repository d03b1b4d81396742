"""The base of every validated config: unknown keys, cross-type values, non-finite floats and
changes after validation are all errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bertabl.trial.strict import Strict


class Example(Strict):
    steps: int
    rate: float = 0.5


def test_a_strict_model_takes_exactly_its_typed_keys():
    assert Example(steps=3).model_dump() == {"steps": 3, "rate": 0.5}
    assert Example(steps=3, rate=1).rate == 1  # an int is a float: TOML's 1 for 1.0
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Example(steps=3, step=4)
    with pytest.raises(ValidationError, match="Input should be a valid integer"):
        Example(steps="3")  # no coercion from strings
    with pytest.raises(ValidationError, match="Input should be a valid integer"):
        Example(steps=3.0)
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValidationError, match="finite number"):
            Example(steps=3, rate=bad)


def test_a_strict_model_is_frozen_and_hashable_by_value():
    example = Example(steps=3)
    with pytest.raises(ValidationError, match="frozen"):
        example.steps = 4
    assert example == Example(steps=3) and hash(example) == hash(Example(steps=3))
