"""The fine-tuning trial body: a pre-trained checkpoint + one task + one grid point + one seed.

A plain function (no Ray inside), like the pre-training body. The restart's seed sets both the
data order and the classifier's initialisation, the paper's definition of a random restart.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    DataCollatorWithPadding,
)

from bertabl.data.tasks import TaskSpec, load_split, task_spec
from bertabl.finetune import features as tag_features
from bertabl.finetune import metrics as task_metrics
from bertabl.finetune import multiple_choice, ner, squad
from bertabl.finetune.heads import (
    BiLSTMClassifier,
    BiLSTMQuestionAnswering,
    FeatureTaggingHead,
    LeftToRightClassifier,
)
from bertabl.finetune.pooling import PooledClassifier
from bertabl.finetune.recipe import Tuning, recipe_of
from bertabl.finetune.vocab import compact_word_embeddings, readable_ids
from bertabl.training import (
    Precision,
    TrialRuntime,
    seed_everything,
)


def finetune(
    config: dict[str, Any], pretrained_dir: Path, out_dir: Path, runtime: TrialRuntime
) -> dict[str, Any]:
    """Fine-tune and evaluate on dev after every epoch; returns the last epoch's metrics.

    Checkpoints at every epoch end (and every `runtime.checkpoint_every` steps) and resumes from
    the latest one, with the same result as an uninterrupted run.
    """
    spec = task_spec(config["task"], config["task_data"])
    device = runtime.device
    seed_everything(config["seed"])
    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    feature_based = spec.family == "tagging" and config["head"] == "features"
    splits = {
        split: load_split(spec.name, split, config["task_data"])
        for split in ("train", "dev", *spec.extra_dev_splits)
    }
    if spec.family == "span_qa":
        examples = {k: list(v) for k, v in splits.items()}
        # BERT's doc_stride (the distance between window starts) is 128 at length 384; shorter
        # windows use half their length so that consecutive windows still overlap.
        windows = {
            "max_seq_len": config["max_seq_len"],
            "doc_stride": min(128, config["max_seq_len"] // 2),
        }
        encoded = {"train": squad.prepare_train_features(examples["train"], tokenizer, **windows)}
        eval_features = squad.prepare_eval_features(examples["dev"], tokenizer, **windows)
        collate = DataCollatorWithPadding(tokenizer)
        version = 2 if spec.name == "squad_v2" else 1

        def evaluate_split(split: str) -> dict[str, float]:
            return _evaluate_span_qa(
                model,
                examples[split],
                eval_features,
                collate,
                config["eval_batch_size"],
                precision,
                version,
            )
    elif spec.family == "multiple_choice":
        encoded = {
            k: multiple_choice.encode(list(v), tokenizer, config["max_seq_len"])
            for k, v in splits.items()
        }

        def collate(features):
            return multiple_choice.collate(features, tokenizer)

        def evaluate_split(split: str) -> dict[str, float]:  # argmax over the 4 scores
            return evaluate(
                model, encoded[split], collate, config["eval_batch_size"], precision, spec
            )
    elif feature_based:
        sentences = {
            k: ner.encode(list(v), tokenizer, config["max_seq_len"]) for k, v in splits.items()
        }
        gold = {k: v["tags"] for k, v in splits.items()}
        # The frozen encoder runs once per (checkpoint, data): the six feature variants of one
        # pre-trained model share this cache in its trial directory.
        states = {
            k: tag_features.cached_hidden_states(
                pretrained_dir,
                v,
                pretrained_dir.parent / "feature-cache",
                batch_size=config["eval_batch_size"],
                device=device,
            )
            for k, v in sentences.items()
        }
        encoded = {k: list(range(len(v))) for k, v in sentences.items()}  # items are indices

        def collate(indices):  # the loop collates training items only
            return tag_features.collate(
                [sentences["train"][i] for i in indices], [states["train"][i] for i in indices]
            )

        def evaluate_split(split: str) -> dict[str, float]:
            return _evaluate_features(
                model,
                sentences[split],
                states[split],
                gold[split],
                config["eval_batch_size"],
                precision,
            )
    elif spec.family == "tagging":
        encoded = {
            k: ner.encode(list(v), tokenizer, config["max_seq_len"]) for k, v in splits.items()
        }
        gold = {k: v["tags"] for k, v in splits.items()}

        def collate(features):
            return ner.collate(features, tokenizer.pad_token_id)

        def evaluate_split(split: str) -> dict[str, float]:
            return _evaluate_tagging(
                model, encoded[split], gold[split], collate, config["eval_batch_size"], precision
            )
    else:
        encoded = {k: _encode(v, tokenizer, config) for k, v in splits.items()}
        collate = DataCollatorWithPadding(tokenizer)  # dynamic padding: to the batch's longest

        def evaluate_split(split: str) -> dict[str, float]:
            return evaluate(
                model, encoded[split], collate, config["eval_batch_size"], precision, spec
            )

    train = encoded["train"]
    lengths = [_length(x) for x in (sentences["train"] if feature_based else train)]
    # Seeded right before loading, so the restart's seed alone decides the head's init.
    torch.manual_seed(config["seed"])
    model = _model(config, pretrained_dir, spec).to(device)
    if not feature_based:  # (its items are indices; the frozen encoder ran in the feature cache)
        read = [*encoded.values(), *([eval_features] if spec.family == "span_qa" else [])]
        # finetune/vocab.py: same numbers, less work
        compact_word_embeddings(model, readable_ids(read, tokenizer))

    precision = Precision.for_device(device, runtime.precision)
    size = config["batch_size"]
    per_epoch = math.ceil(len(train) / size)
    # The recipe (finetune/recipe.py): parameter groups, freezing, accumulation, EMA.
    tuning = Tuning(model, config, config["epochs"] * per_epoch)
    losses: list[float]
    epoch, first_batch, step, losses = tuning.resume(runtime, precision, [])
    history = runtime.history

    def save() -> None:
        tuning.checkpoint(runtime, precision, epoch, first_batch, step, losses)

    started = time.perf_counter()
    metrics: dict[str, Any] = history[-1] if history else {}
    while epoch <= config["epochs"]:
        model.train()
        tuning.start_epoch(epoch)
        # The epoch's order depends only on (seed, epoch), so a resumed epoch replays it exactly.
        order = torch.randperm(
            len(train), generator=torch.Generator().manual_seed(config["seed"] * 1_000_003 + epoch)
        ).tolist()
        if config["group_by_length"]:
            order = length_grouped(order, lengths, size)
        for index in range(first_batch, per_epoch):
            items = [train[i] for i in order[index * size : (index + 1) * size]]
            where = f"fine-tuning epoch {epoch}"
            losses.append(tuning.step(items, collate, precision, where))
            step += 1
            first_batch = index + 1
            if runtime.due(step) and first_batch < per_epoch:
                save()
        metrics = {"epoch": epoch, "train_loss": sum(losses) / len(losses)}
        with tuning.evaluation_weights():  # the EMA weights, when the recipe keeps them
            for split in ("dev", *spec.extra_dev_splits):
                scores = evaluate_split(split)
                metrics |= {f"{split}_{name}": value for name, value in scores.items()}
        history.append(metrics)
        runtime.report(metrics | {"seconds": time.perf_counter() - started})
        epoch, first_batch, losses = epoch + 1, 0, []
        if epoch <= config["epochs"]:
            save()
    return metrics


def _model(config: dict[str, Any], pretrained_dir: Path, spec: TaskSpec):
    """The pre-trained encoder with the trial's head (the encoder keeps a causal mask if any)."""
    num_labels = spec.num_labels
    if spec.family == "tagging" and config["head"] == "features":
        encoder = AutoConfig.from_pretrained(pretrained_dir)
        tagger = tag_features.FeatureTagger(
            config["features"],
            num_layers=encoder.num_hidden_layers,
            hidden=encoder.hidden_size,
            lstm_hidden=config["bilstm_hidden"] or encoder.hidden_size,
            num_labels=num_labels,
        )
        return FeatureTaggingHead(tagger)
    if spec.family == "tagging":  # a linear classifier on every token state
        return BertForTokenClassification.from_pretrained(pretrained_dir, num_labels=num_labels)
    if spec.family == "span_qa" and config["head"] == "bilstm":
        return BiLSTMQuestionAnswering.build(pretrained_dir, config["bilstm_hidden"])
    if spec.family == "span_qa":  # start and end vectors dotted with every token state
        return BertForQuestionAnswering.from_pretrained(pretrained_dir)
    if spec.family == "multiple_choice":  # one score per candidate's [CLS], softmax over 4
        return BertForMultipleChoice.from_pretrained(pretrained_dir)
    if config["head"] == "bilstm":
        return BiLSTMClassifier.build(pretrained_dir, num_labels, config["bilstm_hidden"])
    pooling = recipe_of(config).pooling
    if pooling != "cls_pooler":  # the recipe's pooling head (finetune/pooling.py)
        return PooledClassifier.build(pretrained_dir, num_labels, pooling)
    if AutoConfig.from_pretrained(pretrained_dir).is_decoder:  # an `ltr` checkpoint
        return LeftToRightClassifier.from_pretrained(pretrained_dir, num_labels=num_labels)
    return BertForSequenceClassification.from_pretrained(pretrained_dir, num_labels=num_labels)


def _forward_batches(model, items: list, collate, batch_size: int, precision: Precision):
    """Evaluation batches: yields (items, labels or None, inputs on the device, model output),
    with dropout off. Callers run it under `torch.no_grad()`."""
    model.eval()
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = collate(chunk)
        labels = batch.pop("labels", None)
        batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
        with precision.autocast():
            out = model(**batch)
        yield chunk, labels, batch, out


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: list,
    collate,
    batch_size: int,
    precision: Precision,
    spec: TaskSpec,
) -> dict[str, float]:
    """The task's metrics on `dataset` (batched, no gradients, dropout off).

    Batches are cut from the examples sorted by length, so dynamic padding adds almost nothing
    (on SST-2 dev, batches of 128 in file order are about half padding). The metrics are
    invariant to the order of (prediction, reference) pairs, and an example's logits do not
    depend on its batch's padding (masked keys) beyond float rounding."""
    by_length = sorted(dataset, key=_length)
    predictions, references = [], []
    for _, labels, _, out in _forward_batches(model, by_length, collate, batch_size, precision):
        logits = out.logits
        predictions.append((logits[:, 0].float() if spec.regression else logits.argmax(-1)).cpu())
        references.append(labels)
    preds = torch.cat(predictions).numpy()
    refs = torch.cat(references).numpy()
    return {name: task_metrics.METRICS[name](preds, refs) for name in spec.metrics}


@torch.no_grad()
def _evaluate_features(
    model: torch.nn.Module,
    sentences: list[dict],
    states: list[torch.Tensor],
    gold: list[list[str]],
    batch_size: int,
    precision: Precision,
) -> dict[str, float]:
    """Entity-level F1 of the feature-based tagger (frozen features, trained BiLSTM)."""

    def collate(indices):
        return tag_features.collate([sentences[i] for i in indices], [states[i] for i in indices])

    predicted: list[list[str]] = []
    batches = _forward_batches(model, list(range(len(sentences))), collate, batch_size, precision)
    for indices, _, batch, out in batches:
        chunk = [sentences[i] for i in indices]
        predicted += tag_features.predict_tags(out.logits.cpu(), batch["first"].cpu(), chunk)
    return ner.evaluate(predicted, gold)


@torch.no_grad()
def _evaluate_tagging(
    model: torch.nn.Module,
    features: list[dict],
    gold: list[list[str]],
    collate,
    batch_size: int,
    precision: Precision,
) -> dict[str, float]:
    """Entity-level precision/recall/F1 (conlleval) of each word's first-sub-token prediction."""
    predicted: list[list[str]] = []
    for chunk, _, _, out in _forward_batches(model, features, collate, batch_size, precision):
        ids = out.logits.argmax(-1).cpu()
        predicted += ner.decode_batch([row.tolist() for row in ids], chunk)
    return ner.evaluate(predicted, gold)


MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
MEGA_BATCH = 50  # batches per length-sorted group (as transformers' LengthGroupedSampler)


def length_grouped(order: list[int], lengths: list[int], batch_size: int) -> list[int]:
    """`order` (already shuffled) sorted by length, longest first, within groups of MEGA_BATCH
    batches: a batch's examples have similar lengths, so dynamic padding adds little, while the
    groups keep the epoch's order random."""
    group = MEGA_BATCH * batch_size
    grouped: list[int] = []
    for start in range(0, len(order), group):
        grouped += sorted(order[start : start + group], key=lambda i: -lengths[i])
    return grouped


def _length(item: dict) -> int:
    """Tokens in an encoded example (the longest candidate for multiple choice)."""
    ids = item["input_ids"]
    return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)


@torch.no_grad()
def _evaluate_span_qa(
    model: torch.nn.Module,
    examples: list[dict],
    features: list[dict],
    collate,
    batch_size: int,
    precision: Precision,
    version: int,
) -> dict[str, float]:
    """Official SQuAD EM/F1 of the best span per question (v2: threshold tuned on these)."""

    def model_inputs(chunk):  # eval features also carry ids and offsets
        return collate([{k: f[k] for k in MODEL_INPUTS} for f in chunk])

    starts, ends = [], []
    for _, _, _, out in _forward_batches(model, features, model_inputs, batch_size, precision):
        starts += out.start_logits.float().cpu().tolist()
        ends += out.end_logits.float().cpu().tolist()
    threshold = math.inf if version == 2 else 0.0  # v2: keep every span; evaluate tunes it
    predictions, na_scores = squad.postprocess(
        examples, features, starts, ends, version=version, threshold=threshold
    )
    scores = squad.evaluate(_as_squad_json(examples), predictions, na_scores, version)
    return {"f1": scores["f1"], "exact_match": scores["exact_match"]}


def _as_squad_json(examples: list[dict]) -> list[dict]:
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


def _encode(dataset, tokenizer, config: dict[str, Any]):
    """Tokenise once, unpadded (the collator pads per batch)."""
    pair = "text_b" in dataset.column_names

    def tokenize(batch):
        args = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
        return tokenizer(*args, truncation=True, max_length=config["max_seq_len"])

    removed = [c for c in dataset.column_names if c != "label"]
    encoded = dataset.map(tokenize, batched=True, remove_columns=removed)
    # Plain dicts of lists are what DataCollatorWithPadding pads. `to_dict` reads each column
    # once; `encoded[c]` is a lazy Column in datasets >= 4, an Arrow lookup per row and column.
    columns = encoded.to_dict()
    columns["labels"] = columns.pop("label")
    return [{c: values[i] for c, values in columns.items()} for i in range(len(encoded))]
