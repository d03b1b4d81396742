"""The per-example paired bootstrap: per-example metric definitions equal the full ones on the
undrawn data, and its p-values behave as a test must at the extremes."""

from __future__ import annotations

import numpy as np
import pytest

from bertabl.finetune import metrics as M
from bertabl.report.significance import (
    _scores,
    constant_predictions,
    paired_bootstrap,
    stalled,
)
from bertabl.tasks.builtin import BUILT_IN

IDENTITY = np.arange(6)[None, :]  # one "resample": every example once


def _classification(pred, gold):
    return [
        {"index": i, "prediction": p, "label": g}
        for i, (p, g) in enumerate(zip(pred, gold, strict=True))
    ]


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
    assert paired_bootstrap(spec, "accuracy", [right, right], [right, right]).p == 1.0
    assert paired_bootstrap(spec, "accuracy", [right], [wrong]).p == 0.0
    # one example of 80 differs: the bootstrap cannot tell the rows apart
    nearly = _classification(["1", *gold[1:]], gold)
    assert paired_bootstrap(spec, "accuracy", [right], [nearly]).p > 0.05
    assert paired_bootstrap(spec, "accuracy", [], []) is None


# -- stalled restarts ------------------------------------------------------------------------
def _balanced(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return [str(x) for x in rng.permutation([0, 1] * (n // 2))]


def _with_accuracy(gold, accuracy, seed=1):
    """Predictions right on exactly round(accuracy * n) examples, the rest flipped."""
    rng = np.random.default_rng(seed)
    wrong = set(rng.choice(len(gold), size=round((1 - accuracy) * len(gold)), replace=False))
    return [str(1 - int(g)) if i in wrong else g for i, g in enumerate(gold)]


def test_a_restart_predicting_one_label_or_guessing_stalled():
    gold, sst2 = _balanced(), BUILT_IN["sst2"]
    assert stalled(sst2, "accuracy", _classification(["1"] * 500, gold))
    # 0.52 on 500 balanced examples: 1 standard error above chance (sqrt(.25/500) = 0.022)
    assert stalled(sst2, "accuracy", _classification(_with_accuracy(gold, 0.52), gold))


def test_a_restart_that_learned_something_did_not_stall():
    gold, sst2 = _balanced(), BUILT_IN["sst2"]
    assert not stalled(sst2, "accuracy", _classification(gold, gold))
    # 0.60: 4.5 standard errors above chance
    assert not stalled(sst2, "accuracy", _classification(_with_accuracy(gold, 0.60), gold))


def test_the_constant_predictor_is_the_majority_label_whatever_the_metric():
    # MRPC-like: 68% positive; predicting "1" everywhere scores F1 = 2*.68/(1+.68) = 0.81 but
    # is exactly what the constant predictor scores
    gold = ["1"] * 340 + ["0"] * 160
    lines = _classification(["1"] * 500, gold)
    assert M.METRICS["f1"]([1] * 500, [int(g) for g in gold]) == pytest.approx(0.8095, abs=1e-4)
    assert stalled(BUILT_IN["mrpc"], "f1", lines)
    assert [x["prediction"] for x in constant_predictions(BUILT_IN["mrpc"], lines)] == ["1"] * 500
    assert not stalled(BUILT_IN["mrpc"], "f1", _classification(gold, gold))


def test_tagging_spans_and_regression_stall_at_their_own_constant():
    no_entity = [{"tags": ["O", "O"], "gold": ["B-PER", "O"]}] * 50
    found = [{"tags": ["B-PER", "O"], "gold": ["B-PER", "O"]}] * 50
    assert stalled(BUILT_IN["conll2003"], "f1", no_entity)
    assert not stalled(BUILT_IN["conll2003"], "f1", found)
    empty = [{"id": str(i), "answer": "", "gold": ["Paris"]} for i in range(50)]
    right = [{"id": str(i), "answer": "Paris", "gold": ["Paris"]} for i in range(50)]
    assert stalled(BUILT_IN["squad_v1"], "f1", empty)
    assert not stalled(BUILT_IN["squad_v1"], "f1", right)
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 300)
    noise = [
        {"prediction": float(p), "label": float(g)}
        for p, g in zip(rng.uniform(0, 5, 300), gold, strict=True)
    ]
    tracks = [{"prediction": float(g + rng.normal(0, 1)), "label": float(g)} for g in gold]
    assert stalled(BUILT_IN["stsb"], "pearson", noise)
    assert not stalled(BUILT_IN["stsb"], "pearson", tracks)


def test_the_paired_interval_of_the_difference_matches_its_normal_approximation():
    gold = _balanced(200)
    right = _classification(gold, gold)
    quarter_wrong = _classification(_with_accuracy(gold, 0.75), gold)
    same = paired_bootstrap(BUILT_IN["sst2"], "accuracy", [right], [right])
    assert (same.p, same.low, same.high) == (1.0, 0.0, 0.0)
    test = paired_bootstrap(BUILT_IN["sst2"], "accuracy", [right], [quarter_wrong])
    # the difference per resample is the drawn share of the 50 examples only `theirs` gets
    # wrong: mean 0.25, standard error sqrt(.25 * .75 / 200) = 0.0306, so the 95% interval is
    # about 0.25 +- 0.060
    assert test.low < 0.25 < test.high and test.p == 0.0
    assert test.high - test.low == pytest.approx(2 * 1.96 * 0.0306, abs=0.015)
    # what report/power.py reads: each pair's difference on the whole split, and the variance
    # over resamples of the average (one pair: the same as one pair's), ~ .25 * .75 / 200
    assert test.per_restart == (0.25,) and test.examples == 200
    assert test.variance == test.single_variance == pytest.approx(0.25 * 0.75 / 200, rel=0.15)


def test_averaging_paired_restarts_narrows_the_spread_of_the_difference():
    gold = _balanced(200)
    right = _classification(gold, gold)

    # two restarts that each get a different 50 examples wrong: averaged, the per-example
    # difference is 0.5 on 100 examples: variance .5^2 * (.5 * .5) / 200 vs .25 * .75 / 200
    def wrong_on(indices):
        return [str(1 - int(g)) if i in indices else g for i, g in enumerate(gold)]

    first = _classification(wrong_on(range(50)), gold)
    second = _classification(wrong_on(range(50, 100)), gold)
    test = paired_bootstrap(BUILT_IN["sst2"], "accuracy", [right, right], [first, second])
    assert test.per_restart == (0.25, 0.25)
    assert test.single_variance == pytest.approx(0.25 * 0.75 / 200, rel=0.15)
    assert test.variance == pytest.approx(0.25 * 0.25 / 200, rel=0.15)
