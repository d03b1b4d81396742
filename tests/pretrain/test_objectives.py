"""The objective adapters (bertabl/pretrain/objectives/): one per name of the `Objective`
literal, and each one's facts (read by the plan, the data preparation and the report) are
true of the model it builds and of the batches it is trained on."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest
import torch

from bertabl.matrix.compute import bert_parameters
from bertabl.pretrain.batches import collate
from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.training import IGNORE_INDEX
from bertabl.trial.pretrain import UNTRAINED, ModelConfig, Objective, PretrainConfig
from tests.conftest import REPO
from tests.pretrain.test_batches import IDS, _masker, _stream

NAMES = get_args(Objective)
MODEL = ModelConfig(layers=1, hidden=16, heads=2, intermediate=32, max_position=40)
VOCAB = 70


def test_every_objective_name_has_its_adapter():
    assert list(OBJECTIVES) == list(NAMES)
    assert all(OBJECTIVES[name].name == name for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_parameter_count_is_the_built_models(name: str):
    """bert_parameters (the plan's estimates) counts the pooler and NSP head exactly when the
    objective's model has them."""
    objective = OBJECTIVES[name]
    model = objective.build_model(MODEL, VOCAB, 0)
    counted = sum(p.numel() for p in model.parameters())
    shape = (VOCAB, MODEL.layers, MODEL.hidden, MODEL.ffn, MODEL.max_position)
    assert bert_parameters(*shape, nsp=objective.nsp_head) == counted
    assert (model.bert.pooler is not None) == objective.nsp_head


@pytest.mark.parametrize("name", NAMES)
def test_causal_objectives_save_a_causal_model(name: str):
    """`causal` (matrix checks: no [CLS] task for such a model) is what the saved config says
    (`is_decoder`: fine-tuning keeps the causal mask, tests/pretrain/test_ltr.py)."""
    model = OBJECTIVES[name].build_model(MODEL, VOCAB, 0)
    assert bool(getattr(model.config, "is_decoder", False)) == OBJECTIVES[name].causal


@pytest.mark.parametrize("name", NAMES)
def test_only_the_untrained_objective_reads_no_corpus(name: str):
    config = PretrainConfig(objective=name, model=MODEL, steps=1, batch_size=2, max_seq_len=16,
                            learning_rate=1e-3)  # fmt: skip
    objective = OBJECTIVES[name]
    assert objective.pretrains == objective.reads_corpus == (not config.untrained)
    assert config.untrained == (name == UNTRAINED) == (config.steps == 0)


@pytest.mark.parametrize("name", [n for n in NAMES if OBJECTIVES[n].pretrains])
def test_batches_carry_what_the_objective_trains(name: str):
    """NSP objectives' batches carry the IsNext labels; masking ones predict some of the real
    tokens, the others every next token (the labels shifted by one)."""
    stream = _stream()
    rows, keys = stream.cursor().take(6)
    objective = OBJECTIVES[name]
    batch = collate(stream.store.tokens, rows, keys, IDS, _masker(name), name)
    assert ("next_sentence_label" in batch) == objective.nsp
    predicted = batch["labels"] != IGNORE_INDEX
    real = batch["attention_mask"].bool()
    if objective.masks:
        assert 0 < predicted.sum() < 0.5 * real.sum()
    else:
        assert torch.equal(predicted[:, :-1], real[:, 1:])
        assert torch.equal(
            batch["labels"][:, :-1][predicted[:, :-1]], batch["input_ids"][:, 1:][real[:, 1:]]
        )


def test_planning_imports_neither_torch_nor_transformers():
    """The facts are read when a matrix is planned: the registry loads without torch."""
    code = (
        "import sys; import bertabl.pretrain.objectives, bertabl.matrix.plan; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("name", NAMES)
def test_logged_metrics_are_named_for_what_they_measure(name: str):
    """The loop averages its language-model loss as mlm_loss / mlm_perplexity; LTR logs the
    same numbers as ltr_loss / ltr_perplexity (tests/pretrain/test_ltr.py: in a trial's record)."""
    averaged = {"loss": 2.5, "mlm_loss": 2.0, "mlm_perplexity": 7.39}
    logged = OBJECTIVES[name].logged(dict(averaged))
    if OBJECTIVES[name].causal:
        assert logged == {"loss": 2.5, "ltr_loss": 2.0, "ltr_perplexity": 7.39}
    else:
        assert logged == averaged
