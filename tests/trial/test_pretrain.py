"""Pre-training trial configs: sizes, the sequence-length schedule and the tokens it trains on,
what a matrix cannot mean (errors with the fix), and the untrained control's one identity."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bertabl.trial.data import DataRef
from bertabl.trial.identity import trial_id
from bertabl.trial.pretrain import (
    ModelConfig,
    PretrainConfig,
    PretrainTrialConfig,
    SeqLenPhase,
    seq_len_phases,
)

MODEL = {"layers": 2, "hidden": 64, "heads": 2, "max_position": 512}
BASE = {"objective": "mlm_nsp", "model": MODEL, "steps": 10, "batch_size": 4,
        "max_seq_len": 128, "learning_rate": 1e-3}  # fmt: skip
DATA = DataRef(identity={"corpus": "synthetic", "tokenizer": "synthetic"}, location={})


def _config(**changes) -> PretrainConfig:
    return PretrainConfig.model_validate(BASE | changes)


def test_the_feed_forward_size_defaults_to_four_times_hidden():
    assert ModelConfig(**MODEL).ffn == 256
    assert ModelConfig(**MODEL, intermediate=100).ffn == 100
    # 16 is divisible by 1, 2, 4, 8, 16: 3 heads do not divide it; 2 and 4 are as near, 2 named
    with pytest.raises(
        ValidationError, match=r"heads \(3\) must divide hidden \(16\); e.g. heads = 2"
    ):
        ModelConfig(layers=1, hidden=16, heads=3)


def test_the_papers_schedule_trains_on_its_tokens():
    # BERT: 1M steps of 256 sequences, 90% of them at 128 tokens, the last 10% at 512
    schedule = [{"seq_len": 128, "fraction": 0.9}, {"seq_len": 512, "fraction": 0.1}]
    paper = _config(steps=1_000_000, batch_size=256, max_seq_len=512, seq_len_schedule=schedule)
    assert paper.phases() == [(900_000, 128), (1_000_000, 512)]
    assert paper.tokens == 256 * (900_000 * 128 + 100_000 * 512)
    assert _config().phases() == [(10, 128)] and _config().tokens == 10 * 4 * 128


def test_phases_that_round_to_no_steps_are_dropped():
    schedule = [SeqLenPhase(seq_len=64, fraction=0.01), SeqLenPhase(seq_len=128, fraction=0.99)]
    assert seq_len_phases(10, 128, schedule) == [(10, 128)]  # 1% of 10 steps rounds to none
    assert seq_len_phases(1000, 128, schedule) == [(10, 64), (1000, 128)]
    assert seq_len_phases(0, 128, []) == [(0, 128)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps = 0 trains nothing"),
        ({"max_seq_len": 1024}, r"max_seq_len \(1024\) exceeds model.max_position \(512\)"),
        ({"seq_len_schedule": [{"seq_len": 64, "fraction": 0.5}]}, "fractions must sum to 1"),
        ({"seq_len_schedule": [{"seq_len": 64, "fraction": 1.0}]}, "make the last phase's"),
        (
            {
                "seq_len_schedule": [
                    {"seq_len": 256, "fraction": 0.5},
                    {"seq_len": 128, "fraction": 0.5},
                ]
            },
            r"seq_len 256 > max_seq_len \(128\)",
        ),
        ({"masking": {"mask": 0.8, "random": 0.1, "same": 0.2}}, "must sum to 1"),
    ],
)
def test_what_a_config_cannot_mean_says_why(changes, message):
    with pytest.raises(ValidationError, match=message):
        _config(**changes)


def test_every_untrained_control_of_one_model_is_one_trial():
    one = PretrainTrialConfig(pretrain=_config(objective="none", steps=0), data=DATA)
    other = PretrainTrialConfig(
        pretrain=_config(
            objective="none", steps=500, learning_rate=0.5, masking={"probability": 0.2}
        ),
        data=DATA,
    )
    assert one.pretrain.steps == other.pretrain.steps == 0 and one.id == other.id
    assert one.pretrain.tokens == 0
    seeded = PretrainTrialConfig(pretrain=_config(objective="none", steps=0, seed=1), data=DATA)
    assert seeded.id != one.id  # the seed decides the weights


def test_a_pretraining_config_round_trips_through_json_with_its_id():
    config = PretrainTrialConfig(pretrain=_config(), data=DATA)
    dumped = json.loads(json.dumps(config.model_dump(mode="json")))
    again = PretrainTrialConfig.model_validate(dumped)
    assert again == config and again.id == config.id == trial_id("pt", dumped)
    assert config.id.startswith("pt-") and not config.trained_vocabulary
    trained = {"corpus": "synthetic", "tokenizer": {"trained": 4000}}
    assert PretrainTrialConfig(
        pretrain=_config(), data=DataRef(identity=trained, location={})
    ).trained_vocabulary
