"""The reference side: transformers' `Trainer`, fed the way the transformers examples feed it.

One function per task family, each following its example script (examples/pytorch/):
text-classification/run_glue.py, token-classification/run_ner.py, question-answering/run_qa.py
(+ utils_qa.py's post-processing), multiple-choice/run_swag.py. Their data preparation is
written out here (the scripts are command-line programs, not importable), with the scripts'
defaults where this bench does not set a value: dynamic padding (DataCollatorWithPadding and
friends, i.e. `pad_to_max_length` off), random sampling, AdamW with eps 1e-8. Scores come from
the trusted definitions, not from bertabl: scikit-learn, scipy, seqeval, and SQuAD v1.1's
official evaluate script's normalisation, EM and F1.

The examples a side trains and scores on are bertabl's readers' rows (`load_split`), so both
sides see identical data; everything after reading is this module's own.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertabl.data.formats.conll import CONLL_LABELS


def train_and_score(
    family: str, config, rows: dict[str, Any], model_dir: Path, out: Path, device, precision: str
) -> dict[str, float]:
    """The last epoch's dev scores of `family`'s example recipe on `rows` ("train", "dev")."""
    return _FAMILIES[family](config, rows, model_dir, out, device, precision)


def _arguments(config, out: Path, device, precision: str, steps_per_epoch: int):
    from transformers import TrainingArguments

    total = steps_per_epoch * config.epochs
    return TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        weight_decay=config.weight_decay,
        warmup_steps=int(round(config.warmup_fraction * total)),
        max_grad_norm=1.0,
        eval_strategy="no",  # evaluated at every epoch's end by _EveryEpoch (as bertabl does)
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device.type == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=device.type == "cuda",
    )


def _run(model, args, train, collator, evaluate: Callable[[], dict[str, float]]):
    """Train with `Trainer`, scoring dev with `evaluate` after every epoch (bertabl's trial
    does the same, so both sides do the same work); returns the last epoch's scores."""
    from transformers import PrinterCallback, Trainer, TrainerCallback

    history: list[dict[str, float]] = []

    class _EveryEpoch(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            history.append(evaluate())
            kwargs["model"].train()

    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator,
                      callbacks=[_EveryEpoch()])  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps in a printer of every log
    holder["trainer"] = trainer
    trainer.train()
    return history[-1]


holder: dict[str, Any] = {}  # the running Trainer, for the evaluation callbacks' predict()


def _predict(dataset) -> Any:
    return holder["trainer"].predict(dataset)


def _steps(n: int, batch: int) -> int:
    return -(-n // batch)


# ---------------------------------------------------------------- run_glue


def _sequence(config, rows, model_dir, out, device, precision):
    from datasets import Dataset
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    regression = isinstance(rows["train"][0]["label"], float)
    pair = rows["train"][0].get("text_b") is not None

    def encode(examples: list[dict]) -> Dataset:
        texts = [[e["text_a"] for e in examples]]
        if pair:
            texts.append([e["text_b"] for e in examples])
        enc = tokenizer(*texts, truncation=True, max_length=config.max_seq_len)
        return Dataset.from_dict(dict(enc) | {"label": [e["label"] for e in examples]})

    train, dev = encode(rows["train"]), encode(rows["dev"])
    labels = 1 if regression else len({e["label"] for e in rows["train"]})
    torch.manual_seed(config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=labels)

    def evaluate() -> dict[str, float]:
        prediction = _predict(dev)
        gold = np.array(dev["label"])
        if regression:
            p = prediction.predictions.reshape(-1)
            return {"pearson": pearsonr(p, gold)[0], "spearman": spearmanr(p, gold)[0]}
        p = prediction.predictions.argmax(-1)
        return {"accuracy": accuracy_score(gold, p), "f1": f1_score(gold, p)}

    args = _arguments(config, out, device, precision, _steps(len(train), config.batch_size))
    return _run(model, args, train, DataCollatorWithPadding(tokenizer), evaluate)


# ---------------------------------------------------------------- run_ner


def run_ner_features(sentences: list[dict], tokenizer, max_length: int) -> dict[str, list]:
    """run_ner's tokenize_and_align_labels with label_all_tokens = False: the tags as the files
    give them, at each word's first sub-token; -100 at special tokens and later sub-tokens.
    Columns: the tokenizer's, and "labels"."""
    label_to_id = {label: i for i, label in enumerate(CONLL_LABELS)}
    enc = tokenizer([s["tokens"] for s in sentences], truncation=True, max_length=max_length,
                    is_split_into_words=True)  # fmt: skip
    all_labels = []
    for i, sentence in enumerate(sentences):
        labels, previous = [], None
        for word in enc.word_ids(i):
            if word is None or word == previous:
                labels.append(-100)
            else:
                labels.append(label_to_id[sentence["tags"][word]])
            previous = word
        all_labels.append(labels)
    return dict(enc) | {"labels": all_labels}


def _tagging(config, rows, model_dir, out, device, precision):
    from datasets import Dataset
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(sentences: list[dict]) -> Dataset:
        return Dataset.from_dict(run_ner_features(sentences, tokenizer, config.max_seq_len))

    train, dev = encode(rows["train"]), encode(rows["dev"])
    torch.manual_seed(config.seed)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(CONLL_LABELS))
    gold = [list(s["tags"]) for s in rows["dev"]]

    def evaluate() -> dict[str, float]:
        prediction = _predict(dev)
        predicted = []
        for p, labels, g in zip(prediction.predictions.argmax(-1), prediction.label_ids, gold,
                                strict=True):  # fmt: skip
            tags = [CONLL_LABELS[x] for x, y in zip(p, labels, strict=True) if y != -100]
            predicted.append(tags + ["O"] * (len(g) - len(tags)))  # words cut by max_length
        return {
            "f1": f1_score(gold, predicted),
            "precision": precision_score(gold, predicted),
            "recall": recall_score(gold, predicted),
        }

    args = _arguments(config, out, device, precision, _steps(len(train), config.batch_size))
    return _run(model, args, train, DataCollatorForTokenClassification(tokenizer), evaluate)


# ---------------------------------------------------------------- run_qa


def _span_qa(config, rows, model_dir, out, device, precision):
    from datasets import Dataset
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    stride = config.window_stride

    def windows(examples: list[dict]):
        return tokenizer(
            [e["question"].lstrip() for e in examples],
            [e["context"] for e in examples],
            truncation="only_second",
            max_length=config.max_seq_len,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )

    def train_features(examples: list[dict]) -> Dataset:  # run_qa's prepare_train_features
        enc = windows(examples)
        starts, ends = [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            ids = enc["input_ids"][i]
            cls = ids.index(tokenizer.cls_token_id)
            sequence = enc.sequence_ids(i)
            answers = examples[enc["overflow_to_sample_mapping"][i]]["answers"]
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            first = sequence.index(1)
            last = len(sequence) - 1 - sequence[::-1].index(1)
            if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
                starts.append(cls)
                ends.append(cls)
                continue
            start = first
            while start <= last and offsets[start][0] <= start_char:
                start += 1
            end = last
            while end >= first and offsets[end][1] >= end_char:
                end -= 1
            starts.append(start - 1)
            ends.append(end + 1)
        keep = ("input_ids", "token_type_ids", "attention_mask")
        return Dataset.from_dict({k: enc[k] for k in keep} | {
            "start_positions": starts, "end_positions": ends})  # fmt: skip

    dev_examples = rows["dev"]
    dev_enc = windows(dev_examples)  # run_qa's prepare_validation_features
    dev_offsets = [
        [o if dev_enc.sequence_ids(i)[k] == 1 else None for k, o in enumerate(offsets)]
        for i, offsets in enumerate(dev_enc["offset_mapping"])
    ]
    keep = ("input_ids", "token_type_ids", "attention_mask")
    dev = Dataset.from_dict({k: dev_enc[k] for k in keep})
    train = train_features(rows["train"])
    torch.manual_seed(config.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)

    def evaluate() -> dict[str, float]:
        prediction = _predict(dev)
        start_logits, end_logits = prediction.predictions
        by_example = collections.defaultdict(list)
        for i, example in enumerate(dev_enc["overflow_to_sample_mapping"]):
            by_example[example].append(i)
        exact = f1 = 0.0
        for index, example in enumerate(dev_examples):
            answer = _best_span(by_example[index], start_logits, end_logits, dev_offsets,
                                example["context"])  # fmt: skip
            golds = example["answers"]["text"]
            exact += max(_exact(answer, g) for g in golds)
            f1 += max(_f1(answer, g) for g in golds)
        return {"f1": f1 / len(dev_examples), "exact_match": exact / len(dev_examples)}

    args = _arguments(config, out, device, precision, _steps(len(train), config.batch_size))
    return _run(model, args, train, DataCollatorWithPadding(tokenizer), evaluate)


def _best_span(features, start_logits, end_logits, offsets, context: str, n_best: int = 20,
               max_answer_length: int = 30) -> str:  # fmt: skip
    """utils_qa.postprocess_qa_predictions for SQuAD v1.1: the best-scoring valid span over
    the example's windows (n_best starts x n_best ends, inside the context, end >= start,
    at most max_answer_length tokens)."""
    best, best_score = "", -float("inf")
    for f in features:
        starts, ends, spans = start_logits[f], end_logits[f], offsets[f]
        for s in np.argsort(starts)[-1 : -n_best - 1 : -1]:
            for e in np.argsort(ends)[-1 : -n_best - 1 : -1]:
                if s >= len(spans) or e >= len(spans) or spans[s] is None or spans[e] is None:
                    continue
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = starts[s] + ends[e]
                if score > best_score:
                    best, best_score = context[spans[s][0] : spans[e][1]], score
    return best


def _normalize(text: str) -> str:
    """SQuAD v1.1's official normalize_answer: lower case, no punctuation, no articles, single
    spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _exact(prediction: str, gold: str) -> float:
    return float(_normalize(prediction) == _normalize(gold))


def _f1(prediction: str, gold: str) -> float:
    predicted, truth = _normalize(prediction).split(), _normalize(gold).split()
    common = collections.Counter(predicted) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------- run_swag


def run_swag_features(examples: list[dict], tokenizer, max_length: int) -> dict[str, list]:
    """run_swag's preprocess_function: sent1 four times, sent2 + " " + each ending, truncation=True;
    each column grouped in fours, and "label"."""
    firsts = [e["context"] for e in examples for _ in range(4)]
    seconds = [f"{e['start']} {ending}" for e in examples for ending in e["endings"]]
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    grouped = {k: [v[i : i + 4] for i in range(0, len(v), 4)] for k, v in enc.items()}
    return grouped | {"label": [e["label"] for e in examples]}


def _multiple_choice(config, rows, model_dir, out, device, precision):
    from datasets import Dataset
    from transformers import (
        AutoModelForMultipleChoice,
        AutoTokenizer,
        DataCollatorForMultipleChoice,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(examples: list[dict]) -> Dataset:
        return Dataset.from_dict(run_swag_features(examples, tokenizer, config.max_seq_len))

    train, dev = encode(rows["train"]), encode(rows["dev"])
    torch.manual_seed(config.seed)
    model = AutoModelForMultipleChoice.from_pretrained(model_dir)

    def evaluate() -> dict[str, float]:
        prediction = _predict(dev)
        return {"accuracy": float(np.mean(prediction.predictions.argmax(-1) == dev["label"]))}

    args = _arguments(config, out, device, precision, _steps(len(train), config.batch_size))
    return _run(model, args, train, DataCollatorForMultipleChoice(tokenizer), evaluate)


_FAMILIES = {
    "classification": _sequence,
    "regression": _sequence,
    "tagging": _tagging,
    "span_qa": _span_qa,
    "multiple_choice": _multiple_choice,
}
