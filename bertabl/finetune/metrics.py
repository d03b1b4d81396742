"""Offline implementations of the official metrics used by the BERT paper's tasks.

Why not ``evaluate.load("glue"/"squad"/"seqeval")``: it fetches the metric script from the
Hugging Face hub at call time, so it fails on an offline machine, and the script version is not
pinned by us. Why not sklearn/scipy/seqeval: they are not runtime dependencies (only numpy is),
and each metric here is a handful of lines. Every definition is a transcription of the reference
one; tests/finetune/test_metrics.py cross-checks against sklearn, scipy, seqeval and embedded
copies of the official SQuAD scripts.

All scores are fractions in [0, 1] (the official scripts print percentages).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# ---------------------------------------------------------------- classification / regression


def _check(predictions: Any, references: Any, name: str, numeric: bool = False):
    """Validate 1-D, equal-length, non-empty inputs; return them as arrays."""
    p, r = np.asarray(predictions), np.asarray(references)
    if p.ndim != 1 or r.ndim != 1:
        raise ValueError(f"{name}: expected 1-D sequences, got shapes {p.shape} and {r.shape}")
    if len(p) != len(r):
        raise ValueError(f"{name}: {len(p)} predictions but {len(r)} references")
    if len(p) == 0:
        raise ValueError(f"{name}: predictions and references are empty")
    if numeric:
        if len(p) < 2:  # a correlation of one pair is undefined (scipy raises too)
            raise ValueError(f"{name}: need at least 2 pairs, got {len(p)}")
        return p.astype(np.float64), r.astype(np.float64)
    # Comparing int labels with string labels silently gives "all wrong"; sklearn refuses too.
    if (p.dtype.kind in "USO") != (r.dtype.kind in "USO"):
        raise ValueError(f"{name}: mixed label types ({p.dtype} vs {r.dtype})")
    return p, r


def accuracy(predictions: Any, references: Any) -> float:
    """Fraction of predictions equal to the reference label."""
    p, r = _check(predictions, references, "accuracy")
    return float(np.mean(p == r))


def f1_binary(predictions: Any, references: Any, positive_label: Any = 1) -> float:
    """F1 of the positive class (sklearn ``f1_score(average="binary", zero_division=0)``)."""
    p, r = _check(predictions, references, "f1_binary")
    labels = set(p.tolist()) | set(r.tolist())
    # Like sklearn: a third label means this is not a binary task (e.g. MNLI by mistake).
    if len(labels) > 2 or (len(labels) == 2 and positive_label not in labels):
        raise ValueError(
            f"f1_binary: needs at most 2 labels including positive_label={positive_label!r}, "
            f"got {sorted(map(repr, labels))}"
        )
    pp, rp = p == positive_label, r == positive_label
    tp, fp, fn = int(np.sum(pp & rp)), int(np.sum(pp & ~rp)), int(np.sum(~pp & rp))
    denom = 2 * tp + fp + fn  # F1 = 2PR/(P+R) = 2tp/(2tp+fp+fn)
    return 2 * tp / denom if denom else 0.0  # no positives anywhere: sklearn's zero_division=0


def macro_f1(predictions: Any, references: Any) -> float:
    """Unweighted mean of per-class F1 over the labels in either input (sklearn
    ``f1_score(average="macro", zero_division=0)``)."""
    p, r = _check(predictions, references, "macro_f1")
    scores = []
    for label in sorted(set(p.tolist()) | set(r.tolist())):
        pp, rp = p == label, r == label
        tp, fp, fn = int(np.sum(pp & rp)), int(np.sum(pp & ~rp)), int(np.sum(~pp & rp))
        scores.append(2 * tp / (2 * tp + fp + fn))  # the label occurs, so the sum is > 0
    return float(np.mean(scores))


def micro_f1(predictions: Any, references: Any) -> float:
    """F1 of the pooled counts over all classes (sklearn ``average="micro"``); with one label
    per example every error is one false positive and one false negative, so it equals
    accuracy: 2tp / (2tp + fp + fn) = tp / n."""
    p, r = _check(predictions, references, "micro_f1")
    tp = int(np.sum(p == r))
    errors = len(p) - tp
    return 2 * tp / (2 * tp + 2 * errors)


def matthews_corrcoef(predictions: Any, references: Any) -> float:
    """Matthews correlation (multiclass form, as sklearn); 0.0 when either side is constant."""
    p, r = _check(predictions, references, "matthews_corrcoef")
    n = len(r)
    _, idx = np.unique(np.concatenate([r, p]), return_inverse=True)
    k = int(idx.max()) + 1
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (idx[:n], idx[n:]), 1)
    t_sum, p_sum = cm.sum(axis=1, dtype=np.float64), cm.sum(axis=0, dtype=np.float64)
    correct = float(np.trace(cm))
    cov_ytyp = correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n * n - np.dot(p_sum, p_sum)
    cov_ytyt = n * n - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    # scipy semantics: NaN in -> NaN out; constant input -> NaN (correlation is undefined).
    # We deliberately do not return 0.0 there: a collapsed STS-B model should show up as NaN.
    if np.isnan(x).any() or np.isnan(y).any() or (x == x[0]).all() or (y == y[0]).all():
        return float("nan")
    xm, ym = x - x.mean(), y - y.mean()
    r = np.dot(xm / np.linalg.norm(xm), ym / np.linalg.norm(ym))
    return float(np.clip(r, -1.0, 1.0))


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean rank, as scipy.stats.rankdata."""
    sorter = np.argsort(x, kind="mergesort")
    inv = np.empty(len(x), dtype=np.intp)
    inv[sorter] = np.arange(len(x))
    xs = x[sorter]
    first = np.r_[True, xs[1:] != xs[:-1]]
    dense = np.cumsum(first)[inv]
    bounds = np.r_[np.nonzero(first)[0], len(x)]
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def pearson(predictions: Any, references: Any) -> float:
    """Pearson r (scipy.stats.pearsonr statistic; NaN for constant input)."""
    return _pearson(*_check(predictions, references, "pearson", numeric=True))


def spearman(predictions: Any, references: Any) -> float:
    """Spearman rho = Pearson r of average ranks (scipy.stats.spearmanr; NaN for constant input)."""
    x, y = _check(predictions, references, "spearman", numeric=True)
    if np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    return _pearson(_rankdata(x), _rankdata(y))


# Names as the GLUE metric keys, so task configs can list them directly.
METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy, "f1": f1_binary, "matthews_corr": matthews_corrcoef,
    "pearson": pearson, "spearman": spearman, "macro_f1": macro_f1, "micro_f1": micro_f1,
}  # fmt: skip


def compute(names: Sequence[str] | str, predictions: Any, references: Any) -> dict[str, float]:
    """Compute several registry metrics by name: ``{name: score}``."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("compute: no metric names given")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"compute: unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    return {n: METRICS[n](predictions, references) for n in names}


# ---------------------------------------------------------------- SQuAD

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Official SQuAD normalisation: lower, drop punctuation, drop a/an/the, squeeze spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _token_f1(pred_toks: list[str], gold_toks: list[str]) -> float:
    num_same = sum((collections.Counter(pred_toks) & collections.Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _f1_v2(gold: str, pred: str) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:
        # v2 only: "no answer" scores 1 against "no answer", else 0. (v1 gives 0 here.)
        return float(gold_toks == pred_toks)
    return _token_f1(pred_toks, gold_toks)


def _squad_questions(predictions: Any, dataset: Any, name: str) -> list[dict]:
    if not isinstance(predictions, Mapping):
        raise ValueError(f"{name}: predictions must be a dict {{question id: answer text}}")
    if not predictions:
        raise ValueError(f"{name}: predictions are empty")
    if isinstance(dataset, Mapping) and "data" in dataset:  # the whole JSON file was passed
        dataset = dataset["data"]
    qas = [qa for article in dataset for par in article["paragraphs"] for qa in par["qas"]]
    if not qas:
        raise ValueError(f"{name}: the dataset has no questions")
    for qa in qas:
        if qa["id"] in predictions and not isinstance(predictions[qa["id"]], str):
            raise ValueError(f"{name}: prediction for {qa['id']!r} is not a string")
    return qas


def squad_v1(predictions: Mapping[str, str], dataset: Any) -> dict[str, float]:
    """Official SQuAD v1.1 ``evaluate``: max over gold answers of EM and token F1.

    Questions without a prediction score 0 (the official script prints a notice and does the same).
    """
    qas = _squad_questions(predictions, dataset, "squad_v1")
    exact = f1 = 0.0
    for qa in qas:
        golds = [a["text"] for a in qa["answers"]]
        if not golds:
            raise ValueError(f"squad_v1: question {qa['id']!r} has no gold answers (use squad_v2)")
        if qa["id"] not in predictions:
            continue
        pred = normalize_answer(predictions[qa["id"]])
        exact += max(float(pred == normalize_answer(g)) for g in golds)
        f1 += max(_token_f1(pred.split(), normalize_answer(g).split()) for g in golds)
    return {"exact_match": exact / len(qas), "f1": f1 / len(qas)}


def _v2_raw(predictions: Any, dataset: Any, na_probs: Any, name: str) -> tuple[dict, dict, dict]:
    """Has-answer map + per-question EM/F1 before thresholding (official ``get_raw_scores``)."""
    qas = _squad_questions(predictions, dataset, name)
    has_ans, exact, f1 = {}, {}, {}
    for qa in qas:
        qid = qa["id"]
        # Official: bool(answers). is_impossible is also honoured; in the official data the two
        # always agree (impossible questions have answers == [] and plausible_answers instead).
        has_ans[qid] = bool(qa["answers"]) and not qa.get("is_impossible", False)
        golds = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])]
        if not golds or not has_ans[qid]:
            golds = [""]  # unanswerable: the only correct answer is the empty string
        if qid not in predictions:
            continue
        pred = predictions[qid]
        exact[qid] = max(float(normalize_answer(g) == normalize_answer(pred)) for g in golds)
        f1[qid] = max(_f1_v2(g, pred) for g in golds)
    if na_probs is not None:
        if not isinstance(na_probs, Mapping):
            raise ValueError(f"{name}: na_probs must be a dict {{question id: probability}}")
        missing = [q for q in exact if q not in na_probs]
        if missing:
            raise ValueError(f"{name}: na_probs lacks {len(missing)} qids, e.g. {missing[:3]}")
    return has_ans, exact, f1


def _find_best_thresh(preds, scores, na_probs, has_ans) -> tuple[float, float]:
    """Official ``find_best_thresh``: sweep the no-answer threshold over sorted na_probs.

    Starts from "answer nothing" (every unanswerable question right); passing each question in
    na_prob order switches it to "answered". Questions without a prediction stay at 0, so the
    baseline counts only predicted unanswerable ones and the denominator is all questions (the
    official script divides by the predicted ones; identical when nothing is missing).
    """
    cur = best = sum(1 for q, h in has_ans.items() if not h and q in scores)
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        # Unanswerable: raw prediction truthiness, as the official script (" " is an answer).
        cur += scores[qid] if has_ans[qid] else (-1 if preds[qid] else 0)
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return best / len(has_ans), float(best_thresh)


def squad_v2(
    predictions: Mapping[str, str],
    dataset: Any,
    na_probs: Mapping[str, float] | None = None,
    na_threshold: float = 1.0,
) -> dict[str, float]:
    """Official SQuAD v2.0 evaluation. An empty prediction string means "no answer".

    Keys: exact (alias exact_match), f1, total, and HasAns_/NoAns_ exact/f1/total when such
    questions exist. With ``na_probs``, a question whose probability exceeds ``na_threshold`` is
    scored as answered "no answer", and best_exact/best_f1 (+ ``_thresh``) are added.
    Unlike the official script, questions without a prediction count 0 instead of being dropped
    from the denominator (which also makes the official HasAns/NoAns breakdown crash).
    """
    has_ans, exact_raw, f1_raw = _v2_raw(predictions, dataset, na_probs, "squad_v2")

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        if na_probs is None:
            return raw
        # Predicted "no answer": right iff the question is unanswerable.
        na = {q for q in raw if na_probs[q] > na_threshold}
        return {q: float(not has_ans[q]) if q in na else v for q, v in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    out: dict[str, float] = {}
    groups = [("", list(has_ans)), ("HasAns_", [q for q, h in has_ans.items() if h])]
    groups.append(("NoAns_", [q for q, h in has_ans.items() if not h]))
    for prefix, qids in groups:
        if qids:
            out[prefix + "exact"] = sum(exact.get(q, 0.0) for q in qids) / len(qids)
            out[prefix + "f1"] = sum(f1.get(q, 0.0) for q in qids) / len(qids)
            out[prefix + "total"] = len(qids)
    out["exact_match"] = out["exact"]  # same key as squad_v1, for uniform callers
    if na_probs is not None:
        for key, raw in (("best_exact", exact_raw), ("best_f1", f1_raw)):
            out[key], out[key + "_thresh"] = _find_best_thresh(predictions, raw, na_probs, has_ans)
    return out


def best_na_threshold(
    predictions: Mapping[str, str], dataset: Any, na_probs: Mapping[str, float]
) -> tuple[float, float]:
    """(best F1, threshold) over no-answer thresholds, as the official ``find_best_thresh``."""
    has_ans, _, f1_raw = _v2_raw(predictions, dataset, na_probs, "best_na_threshold")
    return _find_best_thresh(predictions, f1_raw, na_probs, has_ans)


# ---------------------------------------------------------------- CoNLL NER (conlleval)


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, typ = tag.partition("-")
    if not sep or not typ or prefix not in ("B", "I", "E", "S"):
        raise ValueError(f"invalid tag {tag!r}: expected 'O' or B-/I-/E-/S- followed by a type")
    return prefix, typ


def _chunk_end(prev_tag: str, tag: str, prev_type: str, typ: str) -> bool:
    # conlleval endOfChunk (with the IOBES rules seqeval adds).
    if prev_tag == "O":
        return False
    if prev_tag in ("E", "S") or prev_type != typ:
        return True
    return tag in ("B", "S", "O")


def _chunk_start(prev_tag: str, tag: str, prev_type: str, typ: str) -> bool:
    # conlleval startOfChunk: an I- after O or after another type opens a new entity, which is
    # what makes IOB1 (I- everywhere, B- only between touching same-type entities) just work.
    if tag == "O":
        return False
    if tag in ("B", "S") or prev_type != typ:
        return True
    return prev_tag in ("E", "S", "O")


def _entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    spans: set[tuple[str, int, int]] = set()
    prev_tag, prev_type, start = "O", "", -1
    for i, raw in enumerate([*tags, "O"]):  # trailing O closes an entity at sentence end
        tag, typ = _split_tag(raw)
        if _chunk_end(prev_tag, tag, prev_type, typ):
            spans.add((prev_type, start, i - 1))
        if _chunk_start(prev_tag, tag, prev_type, typ):
            start = i
        prev_tag, prev_type = tag, typ
    return spans


def conll_f1(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level micro precision/recall/F1 as conlleval (IOB1, IOB2 or IOBES tags).

    An entity counts as correct only if type, start and end all match. Entities never cross
    sentence boundaries.
    """
    if len(predictions) != len(references):
        raise ValueError(f"conll_f1: {len(predictions)} predicted vs {len(references)} sentences")
    if len(predictions) == 0:
        raise ValueError("conll_f1: no sentences")
    n_pred = n_gold = n_correct = 0
    for i, (sp, sg) in enumerate(zip(predictions, references, strict=True)):
        if isinstance(sp, str) or isinstance(sg, str):
            raise ValueError("conll_f1: expected a list of sentences (lists of tags)")
        if len(sp) != len(sg):
            raise ValueError(f"conll_f1: sentence {i}: {len(sp)} predicted vs {len(sg)} gold tags")
        pred, gold = _entities(sp), _entities(sg)
        n_pred, n_gold = n_pred + len(pred), n_gold + len(gold)
        n_correct += len(pred & gold)
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an I-X that opens an entity (after O or another type) becomes B-X."""
    return _retag_openers(tags, "I", "B", "iob1_to_iob2")


def iob2_to_iob1(tags: Sequence[str]) -> list[str]:
    """IOB2 -> IOB1: a B-X stays only where it separates two touching entities of type X (the
    word before is B-X or I-X); every other B-X becomes I-X. IOB1 input comes back unchanged."""
    return _retag_openers(tags, "B", "I", "iob2_to_iob1")


def _retag_openers(tags: Sequence[str], old: str, new: str, name: str) -> list[str]:
    """`tags` with each `old`-X that follows O or another type (an entity's opener) as `new`-X:
    the one place where IOB1 and IOB2 differ."""
    out: list[str] = []
    prev_type = ""
    for tag in tags:
        prefix, typ = _split_tag(tag)
        if prefix not in ("O", "B", "I"):
            raise ValueError(f"{name}: {tag!r} is not an IOB tag")
        out.append(f"{new}-{typ}" if prefix == old and typ != prev_type else tag)
        prev_type = typ
    return out
