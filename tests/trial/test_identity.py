"""Trial ids: the hash of a config's canonical JSON, blind to key order and to where data lives."""

from __future__ import annotations

import hashlib

from bertabl.trial.identity import TRIAL_SCHEMA, trial_id


def test_trial_id_format_and_hash() -> None:
    config = {"b": [1, 2.5], "a": {"y": "z", "x": None}}
    canonical = '{"a":{"x":null,"y":"z"},"b":[1,2.5],"trial_schema":' + f"{TRIAL_SCHEMA}}}"
    expected = "pt-" + hashlib.sha256(canonical.encode()).hexdigest()[:8]
    assert trial_id("pt", config) == expected
    assert trial_id("pt", {"a": {"x": None, "y": "z"}, "b": [1, 2.5]}) == expected
    assert trial_id("ft", config) == "ft-" + expected[3:]
    assert trial_id("pt", {"b": [2.5, 1], "a": {"y": "z", "x": None}}) != expected


def test_locations_are_left_out_at_any_depth() -> None:
    config = {"data": {"identity": {"sha256": "ab"}, "location": {"corpus": "/here"}}}
    moved = {"data": {"identity": {"sha256": "ab"}, "location": {"corpus": "/elsewhere"}}}
    nested = {"data": {"identity": {"sha256": "ab"}}}
    canonical = '{"data":{"identity":{"sha256":"ab"}},"trial_schema":' + f"{TRIAL_SCHEMA}}}"
    expected = "ft-" + hashlib.sha256(canonical.encode()).hexdigest()[:8]
    assert trial_id("ft", config) == trial_id("ft", moved) == trial_id("ft", nested) == expected
    in_a_list = {"tasks": [{"identity": 1, "location": "/a"}, {"identity": 2, "location": "/b"}]}
    bare = {"tasks": [{"identity": 1}, {"identity": 2}]}
    assert trial_id("ft", in_a_list) == trial_id("ft", bare)
    assert trial_id("ft", {"data": {"identity": {"sha256": "cd"}}}) != expected  # content counts
