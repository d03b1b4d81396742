"""Span question answering (SQuAD v1.1 / v2.0): BERT's doc-stride windows, start and end
vectors dotted with every token state (or a BiLSTM over them), n-best span search over windows,
official EM/F1 (v2.0: the no-answer threshold tuned on the scored split)."""

from __future__ import annotations

import math

import torch
from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

from bertabl.finetune import squad
from bertabl.finetune.families.base import FamilyData, Scored, forward_batches
from bertabl.finetune.families.classification import with_lengths
from bertabl.finetune.heads import BiLSTMQuestionAnswering
from bertabl.training import Precision

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class SpanQA(FamilyData):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # `encoded`: the questions, as read
        windows = {"max_seq_len": self.config.max_seq_len, "doc_stride": self.config.window_stride}
        if "train" in self.encoded:
            self.train = squad.prepare_train_features(
                self.encoded["train"], self.tokenizer, **windows
            )
        self.eval_features: list[dict] = []  # none when no dev split is read (`export`)
        if "dev" in self.encoded:
            self.eval_features = squad.prepare_eval_features(
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
        predictions, na_scores = squad.postprocess(
            examples, features, starts, ends, version=self.version, threshold=threshold
        )
        scores = squad.evaluate(as_squad_json(examples), predictions, na_scores, self.version)
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
