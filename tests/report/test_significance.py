"""The per-example paired bootstrap: per-example metric definitions equal the full ones on the
undrawn data, and its p-values behave as a test must at the extremes."""

from __future__ import annotations

import numpy as np
import pytest

from bertabl.finetune import metrics as M
from bertabl.report.significance import _scores, paired_bootstrap_p
from bertabl.tasks.builtin import BUILT_IN

IDENTITY = np.arange(6)[None, :]  # one "resample": every example once


def _classification(pred, gold):
    return [{"index": i, "prediction": p, "label": g} for i, (p, g) in enumerate(zip(pred, gold))]


@pytest.mark.parametrize("metric", ["accuracy", "f1"])
def test_confusion_metrics_equal_the_full_definitions(metric):
    pred, gold = list("011010"), list("011100")
    value = _scores(BUILT_IN["mrpc"], metric, _classification(pred, gold), IDENTITY)[0]
    ints = [int(x) for x in pred], [int(x) for x in gold]
    assert value == pytest.approx(M.METRICS[metric](*ints))


def test_matthews_correlation_equals_the_full_definition():
    pred, gold = list("011010"), list("011100")
    value = _scores(BUILT_IN["cola"], "matthews_corr", _classification(pred, gold), IDENTITY)[0]
    expected = M.matthews_corrcoef([int(x) for x in pred], [int(x) for x in gold])
    assert value == pytest.approx(expected)


def test_entity_f1_from_sentence_counts_equals_conlleval():
    lines = [
        {"tags": ["B-PER", "I-PER", "O"], "gold": ["I-PER", "I-PER", "O"]},
        {"tags": ["B-LOC", "O"], "gold": ["O", "I-LOC"]},
        {"tags": ["O", "B-ORG"], "gold": ["O", "I-ORG"]},
    ]
    draws = np.arange(3)[None, :]
    full = M.conll_f1([x["tags"] for x in lines], [x["gold"] for x in lines])
    for metric in ("f1", "precision", "recall"):
        value = _scores(BUILT_IN["conll2003"], metric, lines, draws)[0]
        assert value == pytest.approx(full[metric])


def test_squad_per_question_scores_equal_the_official_script():
    lines = [
        {"id": "a", "answer": "the Eiffel Tower", "gold": ["Eiffel Tower", "tower"]},
        {"id": "b", "answer": "Paris, France", "gold": ["France"]},
    ]
    dataset = [
        {"paragraphs": [{"qas": [{"id": x["id"], "answers": [{"text": g} for g in x["gold"]]}]}]}
        for x in lines
    ]
    official = M.squad_v1({x["id"]: x["answer"] for x in lines}, dataset)
    draws = np.arange(2)[None, :]
    for metric in ("exact_match", "f1"):
        assert _scores(BUILT_IN["squad_v1"], metric, lines, draws)[0] == pytest.approx(
            official[metric]
        )


def test_the_same_predictions_are_never_significant_and_a_clean_sweep_is():
    gold = ["0", "1"] * 40
    right = _classification(gold, gold)
    wrong = _classification(["1", "0"] * 40, gold)
    spec = BUILT_IN["sst2"]
    assert paired_bootstrap_p(spec, "accuracy", [right, right], [right, right]) == 1.0
    assert paired_bootstrap_p(spec, "accuracy", [right], [wrong]) == 0.0
    # one example of 80 differs: the bootstrap cannot tell the rows apart
    nearly = _classification(["1", *gold[1:]], gold)
    assert paired_bootstrap_p(spec, "accuracy", [right], [nearly]) > 0.05
    assert paired_bootstrap_p(spec, "accuracy", [], []) is None
