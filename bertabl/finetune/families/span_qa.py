"""Span question answering (SQuAD v1.1 / v2.0) as in BERT's ``run_squad.py`` (Devlin et al.,
2019, §4.2-4.3): start and end vectors dotted with every token state (or a BiLSTM over them),
official EM/F1 (v2.0: the no-answer threshold tuned on the scored split).

Three steps, plain functions, then the family's adapter (`SpanQA`) that calls them:

* ``prepare_train_features`` / ``prepare_eval_features``: question = segment A, context =
  segment B, long contexts cut into overlapping windows. ``doc_stride`` has BERT's meaning (the
  distance between window starts), not the Hugging Face ``stride`` (the overlap); the overlap
  passed to the fast tokenizer is derived from it, which reproduces BERT's window loop exactly.
* ``postprocess``: n-best search over start/end logits per window, best span over windows,
  null ("no answer") score from the [CLS] logits.
* ``official_scores``: the official metrics (``bertabl.finetune.metrics``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

from bertabl.finetune.families.base import FamilyData, Scored, forward_batches
from bertabl.finetune.families.classification import with_lengths
from bertabl.finetune.heads import BiLSTMQuestionAnswering
from bertabl.finetune.metrics import best_na_threshold, squad_v1, squad_v2
from bertabl.training import Precision

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def _windows(
    examples: Sequence[Mapping],
    tokenizer: Any,
    max_seq_len: int = 384,
    doc_stride: int = 128,
    max_query_len: int = 64,
) -> list[tuple[int, dict, list[tuple[int, int]], list[int | None]]]:
    """(example index, model inputs, offsets, sequence ids) per window, in example order."""
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
    questions = [ex["question"].lstrip() for ex in examples]
    q_enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    # BERT keeps the first max_query_len question tokens. The fast tokenizer can only truncate
    # one side of a pair, so cut the question text at the end of its last kept token instead.
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, offsets in enumerate(q_enc["offset_mapping"]):
        if len(offsets) > max_query_len:
            questions[i] = questions[i][: offsets[max_query_len - 1][1]]
        by_len[min(len(offsets), max_query_len)].append(i)

    per_example: list[list] = [[] for _ in examples]
    for q_len, idx in by_len.items():
        doc_len = max_seq_len - q_len - 3  # [CLS] q [SEP] context [SEP]
        if doc_len < 1:
            raise ValueError(
                f"max_seq_len={max_seq_len} leaves no room for the context after "
                f"a {q_len}-token question"
            )
        # BERT starts windows doc_stride tokens apart; HF's `stride` is the overlap, so the two
        # agree when overlap = window length - doc_stride (the window length depends on the
        # question length, hence one tokenizer call per question length).
        enc = tokenizer(
            [questions[i] for i in idx],
            [examples[i]["context"] for i in idx],
            truncation="only_second",
            max_length=max_seq_len,
            stride=max(doc_len - doc_stride, 0),
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
            return_attention_mask=True,
        )
        for w, sample in enumerate(enc["overflow_to_sample_mapping"]):
            inputs = {k: list(enc[k][w]) for k in MODEL_INPUTS}
            per_example[idx[sample]].append(
                (idx[sample], inputs, enc["offset_mapping"][w], enc.sequence_ids(w))
            )
    return [win for wins in per_example for win in wins]


def _context_span(seq_ids: list[int | None]) -> tuple[int, int]:
    ctx = [k for k, s in enumerate(seq_ids) if s == 1]
    return ctx[0], ctx[-1]


def prepare_train_features(
    examples: Sequence[Mapping], tokenizer: Any, **windows: int
) -> list[dict]:
    """Unpadded windows with the answer's start/end token positions (0 = [CLS] = no answer).
    `windows`: max_seq_len, doc_stride, max_query_len (BERT's defaults: 384, 128, 64)."""
    features = []
    for i, inputs, offsets, seq_ids in _windows(examples, tokenizer, **windows):
        ex = examples[i]
        start = end = 0  # BERT's target for unanswerable questions and for windows w/o answer
        if not ex.get("is_impossible") and ex["answers"]["text"]:
            text, start_char = ex["answers"]["text"][0], ex["answers"]["answer_start"][0]
            # Some gold answers carry surrounding spaces, which belong to no token.
            start_char += len(text) - len(text.lstrip())
            end_char = start_char + len(text.strip())
            c0, c1 = _context_span(seq_ids)
            if offsets[c0][0] <= start_char and offsets[c1][1] >= end_char:
                start = next(k for k in range(c0, c1 + 1) if offsets[k][1] > start_char)
                end = next(k for k in range(c1, c0 - 1, -1) if offsets[k][0] < end_char)
        features.append({**inputs, "start_positions": start, "end_positions": end})
    return features


def prepare_eval_features(
    examples: Sequence[Mapping], tokenizer: Any, **windows: int
) -> list[dict]:
    """Unpadded windows with example_id, offset_mapping (None off-context), token_is_max_context;
    `windows` as prepare_train_features'."""
    features = []
    for i, inputs, offsets, seq_ids in _windows(examples, tokenizer, **windows):
        offsets = [tuple(o) if s == 1 else None for o, s in zip(offsets, seq_ids, strict=True)]
        features.append({**inputs, "example_id": examples[i]["id"], "offset_mapping": offsets})
    # A token seen in several windows is only allowed to start an answer in the window where it
    # has the most context on both sides (BERT's _check_is_max_context): the edges of a window
    # are where its predictions are least reliable.
    best: dict[tuple[Any, tuple[int, int]], tuple[float, int]] = {}
    ctx_positions = []
    for f_idx, f in enumerate(features):
        pos = [k for k, o in enumerate(f["offset_mapping"]) if o is not None]
        ctx_positions.append(pos)
        n = len(pos)
        for j, k in enumerate(pos):
            score = min(j, n - 1 - j) + 0.01 * n
            key = (f["example_id"], f["offset_mapping"][k])
            if key not in best or score > best[key][0]:  # strict: the first window wins ties
                best[key] = (score, f_idx)
    for f_idx, (f, pos) in enumerate(zip(features, ctx_positions, strict=True)):
        flags = [False] * len(f["offset_mapping"])
        for k in pos:
            flags[k] = best[(f["example_id"], f["offset_mapping"][k])][1] == f_idx
        f["token_is_max_context"] = flags
    return features


def postprocess(
    examples: Sequence[Mapping],
    features: Sequence[Mapping],
    start_logits: Sequence,
    end_logits: Sequence,
    n_best: int = 20,
    max_answer_len: int = 30,
    version: int = 1,
    threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, float]]:
    """Predicted answer text and no-answer score (null - best span score) per question id.

    ``start_logits[i]``/``end_logits[i]`` belong to ``features[i]`` (possibly padded longer).
    For version 2 a question is answered "" when its na score exceeds ``threshold``; pass
    ``threshold=math.inf`` to keep every best span (what ``official_scores`` needs to tune the
    threshold).
    """
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    if not (len(features) == len(start_logits) == len(end_logits)):
        raise ValueError(
            f"{len(features)} features but {len(start_logits)} start and "
            f"{len(end_logits)} end logit rows"
        )
    by_example: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(features):
        by_example[f["example_id"]].append(i)

    predictions: dict[str, str] = {}
    na_scores: dict[str, float] = {}
    for ex in examples:
        best_score, best_text, null_score = -math.inf, "", math.inf
        for i in by_example.get(ex["id"], []):
            f = features[i]
            n = len(f["input_ids"])
            s = np.asarray(start_logits[i], dtype=np.float64)[:n]
            e = np.asarray(end_logits[i], dtype=np.float64)[:n]
            # The least confident window's [CLS] decides the null score, as BERT's run_squad.
            null_score = min(null_score, float(s[0] + e[0]))
            offsets, max_ctx = f["offset_mapping"], f.get("token_is_max_context")
            ends = np.argsort(-e, kind="stable")[:n_best]
            for a in np.argsort(-s, kind="stable")[:n_best]:
                if offsets[a] is None or (max_ctx is not None and not max_ctx[a]):
                    continue
                for b in ends:
                    if offsets[b] is None or b < a or b - a + 1 > max_answer_len:
                        continue
                    score = float(s[a] + e[b])
                    if score > best_score:  # strict: earlier window/start/end wins ties
                        best_score = score
                        best_text = ex["context"][offsets[a][0] : offsets[b][1]]
        na = null_score - best_score  # +inf when no valid span exists (text stays "")
        na_scores[ex["id"]] = na
        predictions[ex["id"]] = "" if version == 2 and na > threshold else best_text
    return predictions, na_scores


def official_scores(
    examples_raw_data: list,
    predictions: Mapping[str, str],
    na_scores: Mapping[str, float],
    version: int,
) -> dict[str, float]:
    """Official metrics (fractions in [0, 1]).

    v1: exact_match, f1. v2: the no-answer threshold is tuned on these very questions, as the
    paper does on dev (official ``find_best_thresh`` on F1), and exact/f1 are reported at it
    together with ``na_threshold``. For v2 pass predictions from ``postprocess(...,
    threshold=math.inf)``: spans already blanked at a fixed threshold cannot be revived by the
    sweep, so the tuned score would be capped by that threshold.
    """
    if version == 1:
        out = squad_v1(predictions, examples_raw_data)
        return {"exact_match": out["exact_match"], "f1": out["f1"]}
    if version != 2:
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    _, thresh = best_na_threshold(predictions, examples_raw_data, na_scores)
    out = squad_v2(predictions, examples_raw_data, na_scores, na_threshold=thresh)
    keep = ("exact", "exact_match", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")
    return {**{k: out[k] for k in keep if k in out}, "na_threshold": thresh}


class SpanQA(FamilyData):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # `encoded`: the questions, as read
        windows = {"max_seq_len": self.config.max_seq_len, "doc_stride": self.config.window_stride}
        if "train" in self.encoded:
            self.train = prepare_train_features(self.encoded["train"], self.tokenizer, **windows)
        self.eval_features: list[dict] = []  # none when no dev split is read (`export`)
        if "dev" in self.encoded:
            self.eval_features = prepare_eval_features(
                self.encoded["dev"], self.tokenizer, **windows
            )
        self.version = 2 if self.spec.name == "squad_v2" else 1

    def encode(self, rows, split: str) -> list[dict]:
        return list(rows)  # windows are cut once the tokenizer's settings are known (above)

    def _collate(self, items: list) -> dict[str, torch.Tensor]:
        batch = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_multiple)(items)
        return with_lengths(batch) if self.config.head == "bilstm" else batch

    def readable(self) -> list[list[dict]]:
        return [self.train, self.eval_features]

    def _build(self) -> torch.nn.Module:
        if self.config.head == "bilstm":
            return BiLSTMQuestionAnswering.build(self.pretrained_dir, self.config.bilstm_hidden)
        return AutoModelForQuestionAnswering.from_pretrained(self.pretrained_dir)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str, precision: Precision) -> Scored:
        """Official SQuAD EM/F1 of the best span per question (v2: threshold tuned on these)."""

        def model_inputs(chunk):  # eval features also carry ids and offsets
            return self.collate([{k: f[k] for k in MODEL_INPUTS} for f in chunk])

        starts, ends = [], []
        features, size = self.eval_features, self.config.eval_batch_size
        for _, _, _, out in forward_batches(model, features, model_inputs, size, precision):
            starts += out.start_logits.float().cpu().tolist()
            ends += out.end_logits.float().cpu().tolist()
        examples = self.encoded[split]
        threshold = math.inf if self.version == 2 else 0.0  # v2: keep every span; evaluate tunes
        predictions, na_scores = postprocess(
            examples, features, starts, ends, version=self.version, threshold=threshold
        )
        scores = official_scores(as_squad_json(examples), predictions, na_scores, self.version)
        threshold = scores.get("na_threshold", math.inf)  # v2: blank what the tuned one does
        lines = []
        for index, ex in enumerate(examples):
            answer = predictions[ex["id"]]
            line = {"index": index, "id": ex["id"], "answer": answer}
            if self.version == 2:
                na = na_scores[ex["id"]]  # +inf when no span was valid: written as null
                line |= {"answer": "" if na > threshold else answer}
                line["na_score"] = na if math.isfinite(na) else None
            lines.append(line | {"gold": list(ex["answers"]["text"])})
        return Scored({"f1": scores["f1"], "exact_match": scores["exact_match"]}, lines)


def as_squad_json(examples: list[dict]) -> list[dict]:
    """The official evaluation's `data` list for these questions (one paragraph each)."""
    return [
        {
            "title": ex["title"],
            "paragraphs": [
                {
                    "context": ex["context"],
                    "qas": [
                        {
                            "id": ex["id"],
                            "question": ex["question"],
                            "is_impossible": ex["is_impossible"],
                            "answers": [
                                {"text": t, "answer_start": s}
                                for t, s in zip(
                                    ex["answers"]["text"],
                                    ex["answers"]["answer_start"],
                                    strict=True,
                                )
                            ],
                        }
                    ],
                }
            ],
        }
        for ex in examples
    ]
