"""A trial's data reference: its identity decides the trial, its location does not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bertabl.trial.data import DataRef
from bertabl.trial.pretrain import PretrainTrialConfig


def _trial(identity, location) -> PretrainTrialConfig:
    pretrain = {
        "objective": "mlm", "model": {"layers": 1, "hidden": 8, "heads": 2, "max_position": 32},
        "steps": 1, "batch_size": 2, "max_seq_len": 16, "learning_rate": 1e-3,
    }  # fmt: skip
    data = DataRef(identity=identity, location=location)
    return PretrainTrialConfig(pretrain=pretrain, data=data)


def test_the_same_data_elsewhere_is_the_same_trial():
    here = _trial({"corpus": "sha256:ab", "tokenizer": "synthetic"}, {"corpus": "/data/a.txt"})
    there = _trial({"corpus": "sha256:ab", "tokenizer": "synthetic"}, {"corpus": "/mnt/a.txt"})
    other = _trial({"corpus": "sha256:cd", "tokenizer": "synthetic"}, {"corpus": "/data/a.txt"})
    assert here.id == there.id != other.id
    assert here.data.location != there.data.location  # the trial still knows where to read


def test_a_reference_needs_both_parts():
    with pytest.raises(ValidationError, match="location"):
        DataRef(identity={"corpus": "sha256:ab"})
