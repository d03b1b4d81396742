"""Fine-tuning trial configs: frozen, a lossless JSON round trip (Ray and records carry them),
ids that hash the canonical dump, settings added later that leave old ids standing, views."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.trial.finetune import (
    CheckpointRef,
    FinetuneTrialConfig,
    MultitaskTrialConfig,
    Recipe,
    TaskViewConfig,
)
from bertabl.trial.finetune import (
    TestTrialConfig as ScoringConfig,  # (not named Test...: pytest would collect it)
)
from bertabl.trial.identity import trial_id
from tests.conftest import TINY_MATRIX


def _plan(**finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_every_trial_config_round_trips_through_json_with_its_id():
    plan = _plan(multitask=[{"name": "mt", "tasks": ["syn_agree", "syn_chain"]}])
    kinds = {
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
            assert trial.id == trial_id("ft", dumped)


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


def test_a_recipe_lists_only_what_differs_from_berts():
    assert Recipe().changes() == {}
    tuned = Recipe(layer_decay=0.8, freeze_layers=2, unfreeze_every=1, pooling="mean")
    assert tuned.changes() == {
        "layer_decay": 0.8, "freeze_layers": 2, "unfreeze_every": 1, "pooling": "mean"
    }  # fmt: skip
    with pytest.raises(ValidationError, match="unfreeze_every needs something frozen"):
        Recipe(unfreeze_every=1)


def test_settings_at_their_default_add_no_key_so_older_ids_stand():
    plain = _plan().finetune[0].config
    dumped = plain.model_dump(mode="json")
    for key in ("recipe", "doc_stride", "document_context", "checkpoint", "tag_scheme"):
        assert key not in dumped, key
    context = plain.model_copy(update={"document_context": True})
    assert context.model_dump(mode="json")["document_context"] is True
    assert context.id != plain.id


def test_span_windows_default_to_berts_stride_or_half_a_short_window():
    config = _plan().finetune[0].config
    assert config.model_copy(update={"max_seq_len": 384}).window_stride == 128  # BERT's
    assert config.model_copy(update={"max_seq_len": 64}).window_stride == 32  # still overlap
    stride = config.model_copy(update={"max_seq_len": 384, "doc_stride": 100})
    assert stride.window_stride == 100
    assert config.head_key == ("linear", config.bilstm_hidden, None)


def test_a_checkpoint_loads_from_its_folder_or_the_hub():
    folder = CheckpointRef(identity={"sha256": "ab"}, location="/models/bert")
    assert (folder.source, folder.revision) == ("/models/bert", None)
    hub = CheckpointRef(identity={"name": "bert-base-uncased", "revision": "main"}, location=None)
    assert (hub.source, hub.revision) == ("bert-base-uncased", "main")


def test_a_test_split_scoring_is_its_own_trial():
    trial = _plan().finetune[0]
    scoring = ScoringConfig(
        task=trial.task, task_data=trial.config.task_data, metric="accuracy",
        trials=[trial.id], splits=["test"],
    )  # fmt: skip
    assert scoring.id.startswith("te-") and scoring.stage == "test"
    assert scoring.id == trial_id("te", json.loads(json.dumps(scoring.model_dump(mode="json"))))
    assert scoring.model_copy(update={"splits": ["test", "glue_test"]}).id != scoring.id
