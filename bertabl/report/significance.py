"""Per-example paired significance: two rows' predictions on the identical dev examples.

A paired bootstrap over examples (Koehn 2004; Berg-Kirkpatrick et al. 2012): each resample draws
the dev examples with replacement, the same draw for both rows and every restart; the statistic
is the mean over paired restarts (restart i of both rows fine-tuned with the same seed) of the
metric's difference on that resample. The two-sided p is twice the smaller tail of that
distribution at 0. Unlike the sign-flip test over restart means (which needs 6+ restarts to
reach p < 0.05), this draws its power from the examples, so the paper's 5 restarts suffice.

Metrics are recomputed from the predictions files with the definitions bertabl scores with
(finetune/metrics.py), from per-example statistics where the metric decomposes (accuracy,
entity-level F1 from per-sentence counts, SQuAD EM/F1 per question, confusion-matrix metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertabl.finetune import metrics as M
from bertabl.tasks.spec import TaskSpec

RESAMPLES = 1000
SEED = 0


@dataclass(frozen=True)
class Paired:
    """The paired bootstrap's answer: the two-sided p, and the seeded percentile 95% interval
    of the difference (ours - theirs, on the metric's 0-1 scale) over the resamples; with what
    report/power.py estimates the design's variation from (same resamples, same pairs)."""

    p: float
    low: float
    high: float
    examples: int = 0  # dev examples each restart was scored on
    variance: float = 0.0  # over resamples, of the restart-averaged difference (the test's)
    single_variance: float = 0.0  # over resamples, of one pair's difference (mean over pairs)
    per_restart: tuple[float, ...] = ()  # each pair's difference on the whole split


def paired_bootstrap(
    spec: TaskSpec,
    metric: str,
    ours: Sequence[Sequence[dict[str, Any]]],
    theirs: Sequence[Sequence[dict[str, Any]]],
    resamples: int = RESAMPLES,
) -> Paired | None:
    """The test of "the rows score the same on `metric`" from paired restarts' predictions
    (lists of predictions-file lines on the same examples); None when nothing pairs up."""
    pairs = [(a, b) for a, b in zip(ours, theirs, strict=False) if a and b and len(a) == len(b)]
    if not pairs:
        return None
    n = len(pairs[0][0])
    rng = np.random.default_rng(SEED)
    draws = rng.integers(0, n, size=(resamples, n))
    whole = np.arange(n)[None, :]
    differences = np.zeros(resamples)
    single_variance, per_restart = 0.0, []
    for a, b in pairs:
        pair = _scores(spec, metric, a, draws) - _scores(spec, metric, b, draws)
        differences += pair
        single_variance += float(np.var(pair))
        whole_split = _scores(spec, metric, a, whole) - _scores(spec, metric, b, whole)
        per_restart.append(float(whole_split[0]))
    differences /= len(pairs)
    below, above = float(np.mean(differences <= 0)), float(np.mean(differences >= 0))
    low, high = np.percentile(differences, [2.5, 97.5])
    return Paired(
        p=min(1.0, 2 * min(below, above)),
        low=float(low),
        high=float(high),
        examples=n,
        variance=float(np.var(differences)),
        single_variance=single_variance / len(pairs),
        per_restart=tuple(per_restart),
    )


def stalled(
    spec: TaskSpec, metric: str, lines: Sequence[dict[str, Any]], resamples: int = RESAMPLES
) -> bool:
    """Whether one restart's predictions do no better than a constant predictor on the same
    examples: not above it at p < 0.05 in a one-sided paired bootstrap (as above, one restart).

    The constant predictor is what a model that learned nothing from the inputs can output:
    the split's majority label (classification, multiple choice), no entity (tagging), an
    empty answer (span QA), and zero correlation (regression). A restart stuck on the loss
    plateau predicts one label or guesses, and cannot beat it; 1-2 lucky points above chance on
    a few hundred examples do not either (Mosbach et al., 2021 call a run that ends at or below
    the majority baseline "failed"; the bootstrap makes "at" mean "within noise of")."""
    if not lines:
        return False
    n = len(lines)
    draws = np.random.default_rng(SEED).integers(0, n, size=(resamples, n))
    ours = _scores(spec, metric, lines, draws)
    if spec.family == "regression":
        constant = np.zeros(resamples)  # a constant has no correlation with anything
    else:
        constant = _scores(spec, metric, constant_predictions(spec, lines), draws)
    return float(np.mean(ours - constant <= 0)) >= 0.05


def constant_predictions(spec: TaskSpec, lines: Sequence[dict[str, Any]]) -> list[dict]:
    """`lines` with every prediction replaced by the constant predictor's (see `stalled`)."""
    family = spec.family
    if family == "tagging":
        return [line | {"tags": ["O"] * len(line["gold"])} for line in lines]
    if family == "span_qa":
        return [line | {"answer": ""} for line in lines]
    labels = [line["label"] for line in lines]
    order = list(spec.labels) or sorted(set(labels))  # ties: the first label
    majority = max(order, key=labels.count)
    return [line | {"prediction": majority} for line in lines]


def _scores(spec: TaskSpec, metric: str, lines: Sequence[dict], draws: np.ndarray) -> np.ndarray:
    """`metric` on each resample (a row of `draws`: example indices) of one restart's lines."""
    family = spec.family
    if family == "tagging":
        counts = np.array([_entity_counts(line) for line in lines], dtype=float)[draws].sum(1)
        predicted, gold, correct = counts[..., 0], counts[..., 1], counts[..., 2]
        precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
        recall = np.divide(correct, gold, out=np.zeros_like(correct), where=gold > 0)
        if metric == "precision":
            return precision
        if metric == "recall":
            return recall
        total = precision + recall
        return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    if family == "span_qa":
        version = 2 if spec.name == "squad_v2" else 1
        per_question = np.array([_span_scores(line, version) for line in lines])
        return per_question[:, 0 if metric == "exact_match" else 1][draws].mean(1)
    if family == "regression":
        pred = np.array([line["prediction"] for line in lines], dtype=float)
        ref = np.array([line["label"] for line in lines], dtype=float)
        function = M.METRICS[metric]
        return np.array([function(pred[row], ref[row]) for row in draws])
    names = list(spec.labels) or list(range(spec.num_labels))  # multiple choice: indices
    pred = np.array([names.index(line["prediction"]) for line in lines])
    ref = np.array([names.index(line["label"]) for line in lines])
    return _confusion_metric(metric, pred[draws], ref[draws], len(names))


def _confusion_metric(metric: str, pred: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """Classification metrics per resample (rows of pred/ref) from their confusion matrices."""
    confusion = np.stack(
        [np.stack([((pred == i) & (ref == j)).sum(1) for j in range(k)], -1) for i in range(k)],
        1,
    ).astype(float)  # [resample, predicted, gold]
    total = confusion.sum((1, 2))
    diagonal = np.diagonal(confusion, axis1=1, axis2=2)
    if metric in ("accuracy", "micro_f1"):
        return diagonal.sum(1) / total
    predicted, gold = confusion.sum(2), confusion.sum(1)
    f1 = np.divide(
        2 * diagonal, predicted + gold, out=np.zeros_like(diagonal), where=(predicted + gold) > 0
    )
    if metric == "f1":  # binary: the second label's F1
        return f1[:, 1]
    if metric == "macro_f1":
        return f1.mean(1)
    if metric == "matthews_corr":  # multi-class MCC (Gorodkin), binary MCC for k = 2
        c, s = diagonal.sum(1), total
        numerator = c * s - (predicted * gold).sum(1)
        denominator = np.sqrt(s**2 - (predicted**2).sum(1)) * np.sqrt(s**2 - (gold**2).sum(1))
        return np.divide(numerator, denominator, out=np.zeros_like(c), where=denominator > 0)
    raise ValueError(f"no per-example definition of {metric}")


def _entity_counts(line: dict) -> tuple[int, int, int]:
    predicted, gold = M._entities(line["tags"]), M._entities(line["gold"])
    return len(predicted), len(gold), len(predicted & gold)


def _span_scores(line: dict, version: int) -> tuple[float, float]:
    """(exact match, F1) of one question, as the official scripts score it."""
    answer, golds = line["answer"], [g for g in line["gold"] if M.normalize_answer(g)]
    if version == 2:
        golds = golds or [""]
        exact = max(float(M.normalize_answer(g) == M.normalize_answer(answer)) for g in golds)
        return exact, max(M._f1_v2(g, answer) for g in golds)
    pred = M.normalize_answer(answer)
    exact = max(float(pred == M.normalize_answer(g)) for g in line["gold"])
    f1 = max(M._token_f1(pred.split(), M.normalize_answer(g).split()) for g in line["gold"])
    return exact, f1
