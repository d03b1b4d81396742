"""Typed trial configs: frozen, a lossless JSON round trip (Ray and records carry them), and ids
that hash the canonical dump."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.trial.finetune import (
    FinetuneTrialConfig,
    MultitaskTrialConfig,
    Recipe,
    TaskViewConfig,
)
from bertabl.trial.identity import trial_id
from bertabl.trial.pretrain import PretrainTrialConfig
from tests.conftest import TINY_MATRIX


def _plan(**finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_every_trial_config_round_trips_through_json_with_its_id():
    plan = _plan(multitask=[{"name": "mt", "tasks": ["syn_agree", "syn_chain"]}])
    kinds = {
        PretrainTrialConfig: plan.pretrain,
        FinetuneTrialConfig: [t for t in plan.finetune if not t.multitask],
        MultitaskTrialConfig: [t for t in plan.finetune if t.multitask],
        TaskViewConfig: plan.views,
    }
    for kind, trials in kinds.items():
        assert trials, kind
        for trial in trials:
            assert isinstance(trial.config, kind)
            dumped = json.loads(json.dumps(trial.config.model_dump(mode="json")))
            again = kind.model_validate(dumped)
            assert again == trial.config and again.id == trial.id
            prefix = "pt" if kind is PretrainTrialConfig else "ft"
            assert trial.id == trial_id(prefix, dumped)


def test_configs_are_frozen():
    trial = _plan().finetune[0]
    with pytest.raises(ValidationError, match="frozen"):
        trial.config.seed = 7


def test_berts_recipe_adds_no_key_and_a_changed_one_only_its_changes():
    plain = _plan().finetune[0].config
    assert "recipe" not in plain.model_dump(mode="json")
    assert plain.recipe == Recipe()
    tuned = _plan(recipe={"layer_decay": 0.5, "ema_decay": 0.9}).finetune[0].config
    assert tuned.model_dump(mode="json")["recipe"] == {"layer_decay": 0.5, "ema_decay": 0.9}
    assert tuned.recipe.layer_decay == 0.5 and tuned.recipe.pooling == "cls_pooler"
    assert tuned.id != plain.id


def test_a_view_is_its_shared_trials_settings_for_one_task():
    plan = _plan(multitask=[{"name": "mt", "tasks": ["syn_agree", "syn_chain"]}])
    shared = next(t for t in plan.finetune if t.multitask)
    view = shared.config.view("syn_chain")
    assert (view.task, view.view_of, view.restart) == ("syn_chain", shared.id, shared.restart)
    assert view.multitask == shared.config.multitask
    assert view.id in {v.id for v in plan.views}
