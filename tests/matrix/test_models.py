"""Checkpoint rows: a variant's `from` names a model no trial of the run pre-trains. Its
identity is its content (a folder's hash; a Hub name and revision), never its path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from bertabl.data import synthetic
from bertabl.errors import MatrixError
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.models import resolve_checkpoint
from tests.conftest import TINY_MATRIX


def save_tiny_bert(folder: Path, hidden: int = 32, layers: int = 1) -> Path:
    """A tiny random BERT with the synthetic suite's vocabulary, as save_pretrained writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(synthetic.lexicon().vocab()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _plan(variants: list[dict], **finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = variants
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_a_folder_row_is_planned_without_pretraining(tmp_path: Path):
    folder = save_tiny_bert(tmp_path / "released")
    plan = _plan([{"name": "here"}, {"name": "released", "from": str(folder)}])
    here, released = plan.rows
    assert len(plan.pretrain) == 1 and plan.pretrain[0].id == here.pretrain_id
    (model,) = plan.checkpoints
    assert released.pretrain_id == model.id and model.id.startswith("ck-")
    assert (model.model_type, model.layers, model.causal) == ("bert", 1, False)
    # word embeddings + 1 layer + MLM head, counted from the safetensors header
    assert model.parameters == sum(
        p.numel() for p in BertForMaskedLM.from_pretrained(folder).parameters()
    )
    trials = cell_trials(plan, released, "syn_agree")
    assert len(trials) == 2 and all(t.config.checkpoint.location == str(folder) for t in trials)
    assert all(t.pretrain_id == model.id for t in trials)


def test_the_identity_is_the_content_not_the_path(tmp_path: Path):
    folder = save_tiny_bert(tmp_path / "a")
    copy = Path(shutil.copytree(folder, tmp_path / "b"))
    (copy / "README.md").write_text("not part of the model")
    assert resolve_checkpoint(str(folder), "w").id == resolve_checkpoint(str(copy), "w").id
    save_tiny_bert(copy, hidden=16)  # other weights: another model
    assert resolve_checkpoint(str(folder), "w").id != resolve_checkpoint(str(copy), "w").id


def test_hub_and_run_sources(tmp_path: Path):
    hub = resolve_checkpoint("hub:bert-base-cased@v1", "w")
    assert hub.checkpoint.identity == {"kind": "hub", "name": "bert-base-cased", "revision": "v1"}
    assert hub.checkpoint.source == "bert-base-cased" and hub.parameters == 0
    assert resolve_checkpoint("hub:bert-base-cased", "w").checkpoint.revision == "main"
    save_tiny_bert(tmp_path / "run" / "trials" / "pt-0123abcd" / "model-step-000000005")
    run = resolve_checkpoint(f"run:{tmp_path / 'run' / 'pt-0123abcd'}@5", "w")
    assert run.checkpoint.location.endswith("model-step-000000005")
    with pytest.raises(MatrixError, match="does not exist; is the pre-training trial finished"):
        resolve_checkpoint(f"run:{tmp_path / 'run' / 'pt-0123abcd'}", "w")


@pytest.mark.parametrize(
    ("variants", "finetune", "message"),
    [
        ([{"name": "x", "from": "/nowhere"}], {}, r"variants\[0\]\.from: /nowhere: no config"),
        (
            [{"name": "x", "from": "hub:m", "pretrain": {"objective": "mlm"}}],
            {},
            "no pre-training to override",
        ),
        ([{"name": "x", "from": "hub:m"}], {"pretrain_steps": [5]}, "pretrain_steps picks"),
    ],
)
def test_checkpoint_row_errors(variants, finetune, message):
    with pytest.raises(MatrixError, match=message):
        _plan(variants, **finetune)


# ---------------------------------------------------------------- untrained = true


def test_an_untrained_row_is_the_checkpoints_architecture_and_tokenizer(tmp_path: Path):
    folder = save_tiny_bert(tmp_path / "released", hidden=32, layers=2)
    plan = _plan(
        [
            {"name": "released", "from": str(folder)},
            {"name": "control", "from": str(folder), "untrained": True},
        ]
    )
    released, control = plan.rows
    (checkpoint,) = plan.checkpoints
    (trial,) = plan.pretrain
    assert released.pretrain_id == checkpoint.id and control.pretrain_id == trial.id
    pt = trial.config.pretrain
    assert pt.objective == "none" and pt.steps == 0
    # save_tiny_bert's BertConfig: 2 x 32, 2 heads, intermediate 64, 64 positions
    assert pt.model.model_dump() == {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64,
                                     "dropout": 0.1, "max_position": 64}  # fmt: skip
    assert trial.config.data.location == {"tokenizer": str(folder)}
    assert trial.config.data.identity["corpus"] == "none"
    assert dict(control.settings)["untrained"] is True
    # the checkpoint's shape, counted with the heads of BertForPreTraining (every control's)
    from transformers import AutoConfig, BertForPreTraining

    built = BertForPreTraining(AutoConfig.from_pretrained(folder))
    assert trial.parameters == built.num_parameters()
    # no corpus to tokenise for it
    from bertabl.data.preparation_jobs import data_jobs

    assert data_jobs((t.id, t.config) for t in plan.pretrain) == []


def test_an_untrained_row_trains_nothing_and_saves_that_shape(tmp_path: Path):
    from transformers import AutoConfig, AutoTokenizer

    from bertabl.pretrain.step_loop import pretrain
    from bertabl.training import TrialRuntime
    from bertabl.trial.files import model_dir_name

    folder = save_tiny_bert(tmp_path / "released", hidden=32, layers=2)
    plan = _plan([{"name": "control", "from": str(folder), "untrained": True}])
    (trial,) = plan.pretrain
    pretrain(trial.config, tmp_path / "out", TrialRuntime(torch.device("cpu")))
    saved = tmp_path / "out" / model_dir_name()
    config, original = AutoConfig.from_pretrained(saved), AutoConfig.from_pretrained(folder)
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "vocab_size"):  # fmt: skip
        assert getattr(config, key) == getattr(original, key), key
    assert AutoTokenizer.from_pretrained(saved).get_vocab() == (
        AutoTokenizer.from_pretrained(folder).get_vocab()
    )


@pytest.mark.parametrize(
    "variant,message",
    [
        ({"name": "c", "untrained": True}, "untrained = true takes its architecture"),
        ({"name": "c", "from": "hub:some/model", "untrained": True}, "this is a Hub model"),
    ],
)
def test_untrained_row_errors(variant, message):
    with pytest.raises(MatrixError, match=message):
        _plan([variant])


def test_an_untrained_row_of_another_architecture_is_refused(tmp_path: Path):
    import json

    folder = save_tiny_bert(tmp_path / "released")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"hidden_act": "relu"}))
    with pytest.raises(MatrixError, match="hidden_act is 'relu', not BERT's 'gelu'"):
        _plan([{"name": "c", "from": str(folder), "untrained": True}])
