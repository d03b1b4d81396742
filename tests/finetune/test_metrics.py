"""Known-answer tests for bertabl.finetune.metrics (no network).

References: hand arithmetic, sklearn/scipy (randomised, fixed seeds), verbatim copies of the
official SQuAD v1.1/v2.0 evaluation scripts (below), seqeval (conlleval semantics), and the real
SQuAD / CoNLL-2003 dev files when present under <repo>/../shared/data.
"""

from __future__ import annotations

import collections
import json
import math
import re
import string
import sys
import warnings
from collections import Counter

import numpy as np
import pytest

from bertabl.finetune import metrics as M
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
SQUAD_DEV = DATA / "squad" / "dev-v1.1.json"
CONLL_TESTA = DATA / "conll2003" / "eng.testa"


# =================================================================================================
# Official SQuAD v1.1 evaluation script (evaluate-v1.1.py), core functions copied verbatim.
# Only changes: 4-space re-indent / double quotes (formatter) and a "v1_" name prefix.
# =================================================================================================


def v1_normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def v1_f1_score(prediction, ground_truth):
    prediction_tokens = v1_normalize_answer(prediction).split()
    ground_truth_tokens = v1_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def v1_exact_match_score(prediction, ground_truth):
    return v1_normalize_answer(prediction) == v1_normalize_answer(ground_truth)


def v1_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def v1_evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    message = "Unanswered question " + qa["id"] + " will receive score 0."
                    print(message, file=sys.stderr)
                    continue
                ground_truths = list(map(lambda x: x["text"], qa["answers"]))
                prediction = predictions[qa["id"]]
                exact_match += v1_metric_max_over_ground_truths(
                    v1_exact_match_score, prediction, ground_truths
                )
                f1 += v1_metric_max_over_ground_truths(v1_f1_score, prediction, ground_truths)

    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total

    return {"exact_match": exact_match, "f1": f1}


# =================================================================================================
# Official SQuAD v2.0 evaluation script (evaluate-v2.0.py), core functions copied verbatim.
# Changes: re-indent/quotes, "v2_" prefix, one-line `if x: stmt` split over two lines, and
# v2_main = the script's main() minus file I/O, plotting and PR curves.
# =================================================================================================


def v2_make_qid_to_has_ans(dataset):
    qid_to_has_ans = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid_to_has_ans[qa["id"]] = bool(qa["answers"])
    return qid_to_has_ans


def v2_normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def v2_get_tokens(s):
    if not s:
        return []
    return v2_normalize_answer(s).split()


def v2_compute_exact(a_gold, a_pred):
    return int(v2_normalize_answer(a_gold) == v2_normalize_answer(a_pred))


def v2_compute_f1(a_gold, a_pred):
    gold_toks = v2_get_tokens(a_gold)
    pred_toks = v2_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def v2_get_raw_scores(dataset, preds):
    exact_scores = {}
    f1_scores = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold_answers = [a["text"] for a in qa["answers"] if v2_normalize_answer(a["text"])]
                if not gold_answers:
                    # For unanswerable questions, only correct answer is empty string
                    gold_answers = [""]
                if qid not in preds:
                    print("Missing prediction for %s" % qid)  # noqa: UP031
                    continue
                a_pred = preds[qid]
                # Take max over all gold answers
                exact_scores[qid] = max(v2_compute_exact(a, a_pred) for a in gold_answers)
                f1_scores[qid] = max(v2_compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def v2_apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    new_scores = {}
    for qid, s in scores.items():
        pred_na = na_probs[qid] > na_prob_thresh
        if pred_na:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def v2_make_eval_dict(exact_scores, f1_scores, qid_list=None):
    if not qid_list:
        total = len(exact_scores)
        return collections.OrderedDict(
            [
                ("exact", 100.0 * sum(exact_scores.values()) / total),
                ("f1", 100.0 * sum(f1_scores.values()) / total),
                ("total", total),
            ]
        )
    else:
        total = len(qid_list)
        return collections.OrderedDict(
            [
                ("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
                ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total),
                ("total", total),
            ]
        )


def v2_merge_eval(main_eval, new_eval, prefix):
    for k in new_eval:
        main_eval["%s_%s" % (prefix, k)] = new_eval[k]  # noqa: UP031


def v2_find_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for i, qid in enumerate(qid_list):  # noqa: B007
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            if preds[qid]:
                diff = -1
            else:
                diff = 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def v2_find_all_best_thresh(main_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans):
    best_exact, exact_thresh = v2_find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = v2_find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def v2_main(dataset, preds, na_probs=None, na_prob_thresh=1.0):
    na_prob_file = na_probs is not None
    if not na_prob_file:
        na_probs = {k: 0.0 for k in preds}
    qid_to_has_ans = v2_make_qid_to_has_ans(dataset)  # maps qid to True/False
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = v2_get_raw_scores(dataset, preds)
    exact_thresh = v2_apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = v2_apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    out_eval = v2_make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        has_ans_eval = v2_make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids)
        v2_merge_eval(out_eval, has_ans_eval, "HasAns")
    if no_ans_qids:
        no_ans_eval = v2_make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids)
        v2_merge_eval(out_eval, no_ans_eval, "NoAns")
    if na_prob_file:
        v2_find_all_best_thresh(out_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans)
    return out_eval


# =================================================================================================
# Helpers
# =================================================================================================


def _squad(questions: list[tuple[str, list[str]]], impossible: bool = False) -> list[dict]:
    """Build a one-article SQuAD "data" list from (qid, gold texts) pairs."""
    qas = []
    for qid, golds in questions:
        qa = {
            "id": qid,
            "question": "?",
            "answers": [{"text": t, "answer_start": 0} for t in golds],
        }
        if impossible or not golds:
            qa["is_impossible"] = not golds
            if not golds:
                qa["plausible_answers"] = [{"text": "decoy", "answer_start": 0}]
        qas.append(qa)
    return [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]


def _assert_v2_matches_official(ours: dict, ref: dict) -> None:
    for key, val in ref.items():
        if key.endswith("total"):
            assert ours[key] == val, key
        elif key.endswith("_thresh"):
            assert ours[key] == val, key
        else:
            assert ours[key] == pytest.approx(val / 100.0, abs=1e-12), key
    assert set(ours) == set(ref) | {"exact_match"}
    assert ours["exact_match"] == ours["exact"]


# =================================================================================================
# Classification / regression: hand-computed
# =================================================================================================


def test_accuracy_hand():
    # matches at positions 0 and 2 -> 2/4
    assert M.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert M.accuracy(["entailment", "neutral"], ["entailment", "contradiction"]) == 0.5
    assert isinstance(M.accuracy(np.array([1, 2]), np.array([1, 2])), float)


def test_f1_binary_hand():
    # pred [1,1,0,0,1] vs gold [1,0,0,1,1]: tp=2 (0,4), fp=1 (1), fn=1 (3)
    # P = 2/3, R = 2/3 -> F1 = 2/3
    assert M.f1_binary([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(2 / 3, abs=1e-15)
    # positive_label=0: tp=1 (2), fp=1 (3), fn=1 (1) -> 2*1/(2+1+1) = 0.5
    assert M.f1_binary([1, 1, 0, 0, 1], [1, 0, 0, 1, 1], positive_label=0) == 0.5
    # no positive predicted and none true -> 0.0 (sklearn zero_division=0)
    assert M.f1_binary([0, 0, 0], [0, 0, 0]) == 0.0
    # positives only predicted: tp=0, fp=2 -> 0
    assert M.f1_binary([1, 1], [0, 0]) == 0.0
    assert M.f1_binary(["yes", "no"], ["yes", "yes"], positive_label="yes") == pytest.approx(2 / 3)


def test_mcc_hand():
    # same confusion as above: tp=2, tn=1, fp=1, fn=1
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2-1)/sqrt(3*3*2*2) = 1/6
    assert M.matthews_corrcoef([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(1 / 6, abs=1e-15)
    assert M.matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0
    assert M.matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    # constant prediction -> 0.0 (sklearn), not NaN
    assert M.matthews_corrcoef([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
    assert M.matthews_corrcoef([1, 1], [1, 1]) == 0.0


def test_pearson_spearman_hand():
    # x=[1,2,3], y=[1,2,4]: xm=[-1,0,1], ym=[-4/3,-1/3,5/3]; xm.ym = 4/3+5/3 = 3
    # |xm| = sqrt(2), |ym| = sqrt(42)/3 -> r = 9/sqrt(84) = 9/(2*sqrt(21))
    assert M.pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / (2 * math.sqrt(21)), abs=1e-14)
    # ties: ranks x=[1,2.5,2.5,4], y=[1,3,2,4], means 2.5: xm=[-1.5,0,0,1.5], ym=[-1.5,.5,-.5,1.5]
    # xm.ym = 4.5, |xm|^2 = 4.5, |ym|^2 = 5 -> rho = 4.5/sqrt(22.5) = sqrt(0.9)
    assert M.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9), abs=1e-14)
    assert M.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    # constant input: undefined -> NaN, like scipy
    assert math.isnan(M.pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(M.spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(M.pearson([1, float("nan"), 3], [1, 2, 3]))


@pytest.mark.parametrize("name", sorted(M.METRICS))
def test_validation(name):
    fn = M.METRICS[name]
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        fn([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="1-D"):
        fn([[1, 0]], [[1, 0]])


def test_validation_specific():
    with pytest.raises(ValueError, match="at least 2"):
        M.pearson([1.0], [2.0])
    with pytest.raises(ValueError, match="at most 2 labels"):
        M.f1_binary([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="positive_label"):
        M.f1_binary(["a", "b"], ["a", "b"])  # positive_label=1 is not a label
    with pytest.raises(ValueError, match="mixed label types"):
        M.accuracy([1, 0], ["1", "0"])


def test_registry_and_compute():
    assert set(M.METRICS) == {
        "accuracy",
        "f1",
        "matthews_corr",
        "pearson",
        "spearman",
        "macro_f1",
        "micro_f1",
    }
    p, r = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    out = M.compute(["accuracy", "f1", "matthews_corr"], p, r)
    assert out == {
        "accuracy": 0.6,
        "f1": pytest.approx(2 / 3),
        "matthews_corr": pytest.approx(1 / 6),
    }
    assert M.compute("accuracy", p, r) == {"accuracy": 0.6}
    with pytest.raises(ValueError, match="unknown metric"):
        M.compute(["accuracy", "bleu"], p, r)
    with pytest.raises(ValueError, match="no metric names"):
        M.compute([], p, r)
    with pytest.raises(ValueError, match="references"):
        M.compute(["accuracy"], p, r[:2])


# =================================================================================================
# Classification / regression: randomised cross-checks against sklearn / scipy
# =================================================================================================

SIZES = [1, 2, 3, 7, 50, 1000]
SEEDS = [0, 1, 2, 3]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_against_sklearn(seed, n):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed * 1000 + n)
    for n_classes in (2, 3):
        y = rng.integers(0, n_classes, n)
        # biased toward the truth so scores are not all near 0
        p = np.where(rng.random(n) < 0.6, y, rng.integers(0, n_classes, n))
        assert M.accuracy(p, y) == pytest.approx(skm.accuracy_score(y, p), abs=1e-9)
        assert M.matthews_corrcoef(p, y) == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-9)
        assert M.matthews_corrcoef(np.zeros(n, int), y) == pytest.approx(
            skm.matthews_corrcoef(y, np.zeros(n, int)), abs=1e-9
        )
        for average, ours in (("macro", M.macro_f1), ("micro", M.micro_f1)):
            ref = skm.f1_score(y, p, average=average, zero_division=0)
            assert ours(p, y) == pytest.approx(ref, abs=1e-9)
        if n_classes == 2:
            for pos in (0, 1):
                ours = M.f1_binary(p.tolist(), y.tolist(), positive_label=pos)
                ref = skm.f1_score(y, p, pos_label=pos, zero_division=0)
                assert ours == pytest.approx(ref, abs=1e-9)
    # string labels, as GLUE RTE/QNLI files carry them
    ys = np.array(["entailment", "not_entailment"])[rng.integers(0, 2, n)]
    ps = np.array(["entailment", "not_entailment"])[rng.integers(0, 2, n)]
    assert M.accuracy(ps, ys) == pytest.approx(skm.accuracy_score(ys, ps), abs=1e-9)
    assert M.matthews_corrcoef(ps, ys) == pytest.approx(skm.matthews_corrcoef(ys, ps), abs=1e-9)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES[1:])
def test_against_scipy(seed, n):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(seed * 1000 + n)
    gold = rng.uniform(0, 5, n)  # STS-B-like scores
    cases = [
        (gold + rng.normal(0, 1, n), gold),
        (rng.normal(0, 1, n), gold),
        # heavy ties on both sides (integer scores)
        (rng.integers(0, 4, n).astype(float), rng.integers(0, 3, n).astype(float)),
        (np.round(gold), gold),
    ]
    for x, y in cases:
        for ours, ref in (
            (M.pearson(x, y), stats.pearsonr(x, y).statistic),
            (M.spearman(x, y), stats.spearmanr(x, y).statistic),
        ):
            if math.isnan(ref):  # constant input (possible at tiny n)
                assert math.isnan(ours)
            else:
                assert ours == pytest.approx(float(ref), abs=1e-9)


# =================================================================================================
# SQuAD v1.1
# =================================================================================================

V1_DATA = _squad(
    [
        ("q1", ["The cat sat on the mat.", "cat sat", "a cat"]),
        ("q2", ["a cat sat on"]),
        ("q3", ["U.S. Army"]),
        ("q4", ["missing prediction"]),
        ("q5", ["Denver Broncos", "The Denver Broncos"]),
        ("q6", ["new york city"]),
        ("q7", ["x"]),
        ("q8", ["The"]),  # gold normalises to "" (articles removed)
    ]
)
V1_PREDS = {
    "q1": "the Cat sat!",  # -> "cat sat": EM 1 (second gold)
    "q2": "the cat sat",  # -> [cat, sat] vs [cat, sat, on]: P=2/2, R=2/3, F1=2*(2/3)/(5/3)=0.8
    "q3": "US army",  # punctuation removed on both sides: EM 1
    # q4 missing: 0
    "q5": "denver broncos.",  # EM 1
    "q6": "New York new york",  # [new,york,new,york] vs [new,york,city]: overlap 2
    # P=2/4, R=2/3 -> F1 = 2*(1/3)/(7/6) = 4/7
    "q7": "",  # F1 0, EM 0
    "q8": "an",  # "" == "": EM 1, but v1 F1 = 0 (num_same == 0)
    "not-in-dataset": "ignored",
}


def test_squad_v1_hand():
    # EM: q1, q3, q5, q8 = 4/8
    # F1: q1 1 + q2 0.8 + q3 1 + q5 1 + q6 4/7 = 3.8 + 4/7
    out = M.squad_v1(V1_PREDS, V1_DATA)
    assert out == {"exact_match": 0.5, "f1": pytest.approx((3.8 + 4 / 7) / 8, abs=1e-15)}
    assert all(isinstance(v, float) for v in out.values())
    one = _squad([("a", ["a cat sat on"])])
    assert M.squad_v1({"a": "the cat sat"}, one)["f1"] == pytest.approx(0.8, abs=1e-15)


def test_squad_v1_matches_official():
    ref = v1_evaluate(V1_DATA, V1_PREDS)
    ours = M.squad_v1(V1_PREDS, {"version": "1.1", "data": V1_DATA})  # whole-file dict accepted
    assert ours["exact_match"] == pytest.approx(ref["exact_match"] / 100, abs=1e-12)
    assert ours["f1"] == pytest.approx(ref["f1"] / 100, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_squad_v1_random_matches_official(seed):
    data, preds, _ = _random_squad(seed, unanswerable=False)
    ref = v1_evaluate(data, preds)
    ours = M.squad_v1(preds, data)
    assert ours["exact_match"] == pytest.approx(ref["exact_match"] / 100, abs=1e-12)
    assert ours["f1"] == pytest.approx(ref["f1"] / 100, abs=1e-12)


def test_squad_validation():
    for fn in (M.squad_v1, M.squad_v2):
        with pytest.raises(ValueError, match="empty"):
            fn({}, V1_DATA)
        with pytest.raises(ValueError, match="dict"):
            fn(["x"], V1_DATA)
        with pytest.raises(ValueError, match="no questions"):
            fn({"q1": "x"}, [{"paragraphs": [{"qas": []}]}])
        with pytest.raises(ValueError, match="not a string"):
            fn({"q1": None}, V1_DATA)
    with pytest.raises(ValueError, match="no gold answers"):
        M.squad_v1({"n": ""}, _squad([("n", [])]))


# =================================================================================================
# SQuAD v2.0
# =================================================================================================

V2_DATA = _squad([("a1", ["Paris"]), ("a2", ["the big apple", "New York"]), ("n1", []), ("n2", [])])
V2_PREDS = {"a1": "paris", "a2": "big apple city", "n1": "", "n2": "something"}
V2_NA = {"a1": 0.1, "a2": 0.6, "n1": 0.3, "n2": 0.9}


def test_squad_v2_hand():
    # a1: EM 1, F1 1. a2: [big,apple,city] vs [big,apple]: P=2/3, R=1 -> F1 0.8, EM 0.
    # n1: "" vs gold [""] -> 1/1. n2: answered an unanswerable question -> 0/0.
    out = M.squad_v2(V2_PREDS, V2_DATA)
    assert out["exact"] == out["exact_match"] == 0.5
    assert out["f1"] == pytest.approx((1 + 0.8 + 1 + 0) / 4, abs=1e-15)
    assert out["HasAns_exact"] == 0.5 and out["HasAns_f1"] == pytest.approx(0.9, abs=1e-15)
    assert out["NoAns_exact"] == 0.5 and out["NoAns_f1"] == 0.5
    assert (out["total"], out["HasAns_total"], out["NoAns_total"]) == (4, 2, 2)
    assert "best_f1" not in out


def test_squad_v2_threshold_hand():
    # threshold 0.5: a2 (0.6) and n2 (0.9) become "no answer": a2 -> 0, n2 -> 1
    # exact = f1 = (1 + 0 + 1 + 1)/4 = 0.75
    out = M.squad_v2(V2_PREDS, V2_DATA, na_probs=V2_NA, na_threshold=0.5)
    assert out["exact"] == 0.75 and out["f1"] == 0.75
    # find_best_thresh (F1): start at #no-ans = 2; sorted by na_prob:
    # a1 (.1) +1 -> 3 (best, thr .1); n1 (.3) +0; a2 (.6) +.8 -> 3.8 (best, thr .6); n2 (.9) -1
    # -> 3.8/4 = 0.95 at 0.6.   (EM: a1 -> 3 at .1, a2 adds 0, n2 -1 -> 3/4 = 0.75 at 0.1)
    assert M.best_na_threshold(V2_PREDS, V2_DATA, V2_NA) == (pytest.approx(0.95, abs=1e-15), 0.6)
    assert out["best_f1"] == pytest.approx(0.95) and out["best_f1_thresh"] == 0.6
    assert out["best_exact"] == 0.75 and out["best_exact_thresh"] == 0.1
    # applying the best threshold reproduces the best score
    assert M.squad_v2(V2_PREDS, V2_DATA, V2_NA, na_threshold=0.6)["f1"] == pytest.approx(0.95)


def test_squad_v2_matches_official_hand():
    _assert_v2_matches_official(M.squad_v2(V2_PREDS, V2_DATA), v2_main(V2_DATA, V2_PREDS))
    for thr in (0.0, 0.1, 0.3, 0.5, 0.6, 0.95, 1.0):
        ours = M.squad_v2(V2_PREDS, V2_DATA, na_probs=V2_NA, na_threshold=thr)
        _assert_v2_matches_official(ours, v2_main(V2_DATA, V2_PREDS, V2_NA, thr))


def test_squad_v2_missing_and_edge_cases():
    # Missing predictions count 0 in every bucket (the official script would drop them from the
    # overall denominator and then crash on the HasAns/NoAns breakdown).
    out = M.squad_v2({"a1": "Paris", "n1": ""}, V2_DATA)
    assert out["exact"] == 0.5 and out["HasAns_exact"] == 0.5 and out["NoAns_exact"] == 0.5
    # gold text that normalises to "" is dropped, leaving [""]: only "" (or "the") is right
    data = _squad([("t", ["The"])])
    assert M.squad_v2({"t": ""}, data)["exact"] == 1.0
    assert M.squad_v2({"t": "the"}, data)["f1"] == 1.0
    # only answerable questions -> no NoAns_* keys
    assert "NoAns_exact" not in M.squad_v2({"a1": "x"}, _squad([("a1", ["x"])]))
    with pytest.raises(ValueError, match="na_probs lacks"):
        M.squad_v2(V2_PREDS, V2_DATA, na_probs={"a1": 0.5})
    with pytest.raises(ValueError, match="na_probs lacks"):
        M.best_na_threshold(V2_PREDS, V2_DATA, {})
    # A missing prediction stays at 0 in the sweep too. Without n2's prediction: start at 1
    # (n1 only); a1 (.1) +1 -> 2; n1 (.3) +0; a2 (.6) +.8 -> 2.8 -> 2.8/4 = 0.7 at 0.6.
    # (The official sweep would start at 2 and divide by 3 predicted: 3.8/3 > 100%.)
    preds = {k: v for k, v in V2_PREDS.items() if k != "n2"}
    assert M.best_na_threshold(preds, V2_DATA, V2_NA) == (pytest.approx(0.7, abs=1e-15), 0.6)


def _random_squad(seed: int, unanswerable: bool = True, n: int = 60):
    """Random SQuAD-shaped data: punctuation, articles, case, repeated tokens, ties in na_probs."""
    rng = np.random.default_rng(seed)
    vocab = ["the", "a", "an", "The", "cat", "Cat", "sat", "mat", "U.S.", "new", "york", "!"]
    vocab += ["dog's", "dogs", "(1990)", "1990", "red-blue", "red", "blue", "An", "  "]

    def phrase():
        return " ".join(rng.choice(vocab, rng.integers(1, 5)))

    questions, preds, na_probs = [], {}, {}
    for i in range(n):
        qid = f"q{i}"
        k = int(rng.integers(0 if unanswerable else 1, 4))
        golds = [phrase() for _ in range(k)]
        questions.append((qid, golds))
        u = rng.random()
        if u < 0.1:
            continue  # no prediction; official v1 counts 0
        elif u < 0.3:
            preds[qid] = ""
        elif u < 0.5 and golds:
            preds[qid] = golds[int(rng.integers(len(golds)))].upper() + "."
        elif u < 0.55:
            preds[qid] = "the"  # normalises to "" but is a truthy (non-empty) prediction
        else:
            preds[qid] = phrase()
        # coarse grid -> many ties, exercising find_best_thresh's tie order
        na_probs[qid] = float(rng.choice([0.0, 0.2, 0.5, 0.7, 1.0, rng.random()]))
    return _squad(questions, impossible=unanswerable), preds, na_probs


@pytest.mark.parametrize("seed", range(12))
def test_squad_v2_random_matches_official(seed):
    data, preds, na_probs = _random_squad(seed)
    # the official v2 script cannot score a dataset with missing predictions: fill them in
    for qa in data[0]["paragraphs"][0]["qas"]:
        preds.setdefault(qa["id"], "")
        na_probs.setdefault(qa["id"], 0.5)
    _assert_v2_matches_official(M.squad_v2(preds, data), v2_main(data, preds))
    for thr in (0.0, 0.2, 0.5, 0.99, 1.0):
        ours = M.squad_v2(preds, data, na_probs=na_probs, na_threshold=thr)
        _assert_v2_matches_official(ours, v2_main(data, preds, na_probs, thr))
    best = M.best_na_threshold(preds, data, na_probs)
    ref = v2_main(data, preds, na_probs)
    assert best == (pytest.approx(ref["best_f1"] / 100, abs=1e-12), ref["best_f1_thresh"])


# =================================================================================================
# SQuAD on the real dev-v1.1.json (skipped when the shared data is absent)
# =================================================================================================


@pytest.fixture(scope="module")
def squad_dev():
    if not SQUAD_DEV.is_file():
        pytest.skip(f"{SQUAD_DEV} not present")
    return json.loads(SQUAD_DEV.read_text(encoding="utf-8"))


def test_squad_dev_first_gold_is_perfect(squad_dev):
    data = squad_dev["data"]
    qas = [qa for a in data for p in a["paragraphs"] for qa in p["qas"]]
    assert len(qas) == 10570
    preds = {qa["id"]: qa["answers"][0]["text"] for qa in qas}
    assert M.squad_v1(preds, data) == {"exact_match": 1.0, "f1": 1.0}
    # as a v2 scorer (every question answerable) the same holds
    v2 = M.squad_v2(preds, data)
    assert (v2["exact"], v2["f1"], v2["HasAns_total"]) == (1.0, 1.0, 10570)


def test_squad_dev_perturbed_matches_official(squad_dev):
    data = squad_dev["data"]
    qas = [qa for a in data for p in a["paragraphs"] for qa in p["qas"]]
    preds = {}
    for i, qa in enumerate(qas):
        text = qa["answers"][-1]["text"]
        if i % 3 == 1:
            text = " ".join(text.split()[1:])  # drop first word: partial F1, often "" (-> 0)
        elif i % 3 == 2:
            text = "The " + text + " of the"  # extra words: F1 < 1 unless articles only
        if i % 11 != 0:  # some questions unanswered
            preds[qa["id"]] = text
    ref = v1_evaluate(data, preds)
    ours = M.squad_v1(preds, data)
    assert ours["exact_match"] == pytest.approx(ref["exact_match"] / 100, abs=1e-12)
    assert ours["f1"] == pytest.approx(ref["f1"] / 100, abs=1e-12)
    assert 0.3 < ours["f1"] < 0.95
    full = {qa["id"]: preds.get(qa["id"], "") for qa in qas}
    _assert_v2_matches_official(M.squad_v2(full, data), v2_main(data, full))


# =================================================================================================
# CoNLL NER (conlleval semantics)
# =================================================================================================


def test_conll_hand_iob2():
    # gold: PER(0-1), LOC(3); pred: PER(0-1), ORG(3) -> 1 correct of 2 / 2: P = R = F1 = 0.5
    out = M.conll_f1([["B-PER", "I-PER", "O", "B-ORG"]], [["B-PER", "I-PER", "O", "B-LOC"]])
    assert out == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    # boundary error: pred PER(0) + PER(1)... vs gold PER(0-1): 0 correct
    assert M.conll_f1([["B-PER", "B-PER"]], [["B-PER", "I-PER"]])["f1"] == 0.0


def test_conll_hand_iob1():
    # gold IOB1 [I-PER, I-PER, B-PER, O, I-LOC]: PER(0-1), PER(2), LOC(4) -> 3 entities
    # pred      [I-PER, I-PER, I-PER, O, I-LOC]: PER(0-2), LOC(4)         -> 2 entities
    # correct: LOC(4) only -> P = 1/2, R = 1/3, F1 = 2*(1/6)/(5/6) = 0.4
    out = M.conll_f1(
        [["I-PER", "I-PER", "I-PER", "O", "I-LOC"]], [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]]
    )
    assert out == {"precision": 0.5, "recall": pytest.approx(1 / 3), "f1": pytest.approx(0.4)}


def test_conll_conlleval_rules():
    ents = M._entities
    # I- after O or after another type opens a new entity
    assert ents(["B-PER", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 1)}
    assert ents(["I-PER", "I-ORG", "I-ORG", "O", "I-ORG"]) == {
        ("PER", 0, 0),
        ("ORG", 1, 2),
        ("ORG", 4, 4),
    }
    assert ents(["O", "I-MISC"]) == {("MISC", 1, 1)}
    # IOBES
    assert ents(["S-PER", "O", "B-LOC", "E-LOC", "S-LOC"]) == {
        ("PER", 0, 0),
        ("LOC", 2, 3),
        ("LOC", 4, 4),
    }
    assert ents([]) == set()
    # entities do not continue across sentences: [I-PER] + [I-PER] is two entities, so it
    # equals [B-PER] + [B-PER] exactly
    assert M.conll_f1([["I-PER"], ["I-PER"]], [["B-PER"], ["B-PER"]])["f1"] == 1.0
    # nothing to find, nothing found -> zeros (conlleval prints 0.00)
    assert M.conll_f1([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_iob1_to_iob2():
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "B-ORG"]
    want = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-ORG"]
    assert M.iob1_to_iob2(tags) == want
    assert M.iob1_to_iob2(want) == want  # IOB2 is a fixed point
    assert M.iob1_to_iob2([]) == []
    with pytest.raises(ValueError, match="not an IOB tag"):
        M.iob1_to_iob2(["S-PER"])


def test_conll_validation():
    with pytest.raises(ValueError, match="sentences"):
        M.conll_f1([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="no sentences"):
        M.conll_f1([], [])
    with pytest.raises(ValueError, match="sentence 1"):
        M.conll_f1([["O"], ["O"]], [["O"], ["O", "O"]])
    with pytest.raises(ValueError, match="list of sentences"):
        M.conll_f1(["B-PER", "O"], ["B-PER", "O"])
    with pytest.raises(ValueError, match="invalid tag"):
        M.conll_f1([["PER"]], [["O"]])


def _random_tags(rng, alphabet, n_sents):
    return [list(rng.choice(alphabet, rng.integers(0, 12))) for _ in range(n_sents)]


IOB_TAGS = ["O", "O", "O", "I-PER", "I-PER", "B-PER", "I-LOC", "B-LOC", "I-ORG", "I-MISC"]
IOBES_TAGS = ["O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC", "I-LOC"]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", range(10))
def test_conll_against_seqeval(seed):
    sq = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    gold = _random_tags(rng, IOB_TAGS, n)
    # prediction: gold with ~25% of tags resampled, so there is partial overlap
    pred = [[t if rng.random() < 0.75 else str(rng.choice(IOB_TAGS)) for t in s] for s in gold]
    ours = M.conll_f1(pred, gold)
    g2, p2 = [M.iob1_to_iob2(s) for s in gold], [M.iob1_to_iob2(s) for s in pred]
    assert M.conll_f1(p2, g2) == ours  # IOB1 -> IOB2 conversion preserves entities
    for y_true, y_pred in ((g2, p2), (gold, pred)):
        assert ours["precision"] == pytest.approx(sq.precision_score(y_true, y_pred), abs=1e-12)
        assert ours["recall"] == pytest.approx(sq.recall_score(y_true, y_pred), abs=1e-12)
        assert ours["f1"] == pytest.approx(sq.f1_score(y_true, y_pred), abs=1e-12)
    # IOBES input, seqeval's default (conlleval-style) mode
    gold_s = _random_tags(rng, IOBES_TAGS, n)
    pred_s = _random_tags(rng, IOBES_TAGS, n)
    pred_s = [ps[: len(gs)] + gs[len(ps) :] for ps, gs in zip(pred_s, gold_s, strict=True)]
    assert M.conll_f1(pred_s, gold_s)["f1"] == pytest.approx(sq.f1_score(gold_s, pred_s), abs=1e-12)


# =================================================================================================
# CoNLL-2003 eng.testa (skipped when the shared data is absent)
# =================================================================================================


@pytest.fixture(scope="module")
def testa():
    if not CONLL_TESTA.is_file():
        pytest.skip(f"{CONLL_TESTA} not present")
    sents, cur = [], []
    for line in CONLL_TESTA.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if cur:
                sents.append(cur)
            cur = []
        elif not line.startswith("-DOCSTART-"):
            cur.append(line.split()[-1])
    if cur:
        sents.append(cur)
    return sents


def test_conll_testa_gold_vs_gold(testa):
    assert len(testa) == 3250
    assert M.conll_f1(testa, testa) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    iob2 = [M.iob1_to_iob2(s) for s in testa]
    assert M.conll_f1(iob2, testa) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_conll_testa_perturbed(testa):
    # eng.testa has 5942 entities: PER 1842, LOC 1837, ORG 1341, MISC 922 (standard dev stats).
    # Erasing a type (tags -> O) leaves every other entity intact, so P = 1 and
    # R = (5942 - erased) / 5942; F1 = 2R/(1+R).
    for typ, count in (("MISC", 922), ("PER", 1842)):
        pred = [[("O" if t.endswith("-" + typ) else t) for t in s] for s in testa]
        kept = 5942 - count
        out = M.conll_f1(pred, testa)
        assert out["precision"] == 1.0
        assert out["recall"] == pytest.approx(kept / 5942, abs=1e-15)
        assert out["f1"] == pytest.approx(2 * kept / (kept + 5942), abs=1e-15)
    # Swapped roles (gold lacks MISC, prediction is the full gold): 922 false positives,
    # so P = 5020/5942 and R = 1.
    pred = [[("O" if t.endswith("-MISC") else t) for t in s] for s in testa]
    out = M.conll_f1(testa, pred)
    assert out["precision"] == pytest.approx(5020 / 5942, abs=1e-15) and out["recall"] == 1.0


def test_no_heavy_runtime_imports():
    # metrics.py must not import sklearn/scipy/seqeval/evaluate (not runtime deps). The module
    # is loaded by path so that whatever bertabl.finetune.__init__ imports does not interfere.
    import subprocess

    code = (
        "import sys, importlib.util as u; "
        f"s = u.spec_from_file_location('m', {M.__file__!r}); "
        "s.loader.exec_module(u.module_from_spec(s)); "
        "bad = {'sklearn', 'scipy', 'seqeval', 'evaluate'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_returns_python_floats():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vals = [f(np.array([1, 0, 1]), np.array([1, 1, 1])) for f in M.METRICS.values()]
    assert all(type(v) is float for v in vals)
