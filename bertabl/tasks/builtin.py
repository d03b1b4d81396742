"""The built-in tasks: one table, as in transformers' run_glue (what `bertabl tasks` lists)."""

from __future__ import annotations

from bertabl.data.formats.glue import GLUE_TASKS
from bertabl.tasks.spec import TaskSpec

# Examples in each standard train split (GLUE's, SQuAD's, SWAG's; CoNLL-2003: sentences), for
# compute estimates of data that is not on this machine.
TRAIN_EXAMPLES = {
    "cola": 8_551,
    "sst2": 67_349,
    "mrpc": 3_668,
    "stsb": 5_749,
    "qqp": 363_846,
    "mnli": 392_702,
    "qnli": 104_743,
    "rte": 2_490,
    "wnli": 635,
    "conll2003": 14_041,
    "squad_v1": 87_599,
    "squad_v2": 130_319,
    "swag": 73_546,
}


def _glue(name: str, description: str, metrics: tuple[str, ...], hub: tuple, **extra) -> TaskSpec:
    """A GLUE task: its input shape and labels come from the GLUE reader's own table."""
    files = GLUE_TASKS[name]
    regression = files.labels == "regression"
    return TaskSpec(
        name=name,
        description=description,
        family="regression" if regression else "classification",
        source="glue",
        pair=files.text_b is not None,
        num_labels=1 if regression else len(files.labels),
        metrics=metrics,
        hub_columns=hub,
        train_examples=TRAIN_EXAMPLES[name],
        labels=() if regression else tuple(files.labels),
        **extra,
    )


def _synthetic(name: str, description: str, pair: bool) -> TaskSpec:
    """A synthetic yes/no task (data/synthetic.py): two labels, scored by accuracy."""
    return TaskSpec(
        name,
        description,
        "classification",
        "synthetic",
        pair=pair,
        num_labels=2,
        metrics=("accuracy",),
        labels=("0", "1"),
    )


def _squad(name: str, description: str) -> TaskSpec:
    metrics = ("f1", "exact_match")
    return TaskSpec(name, description, "span_qa", "squad", True, 0, metrics, **_size(name))


def _size(name: str) -> dict[str, int]:
    return {"train_examples": TRAIN_EXAMPLES[name]}


_NER = "CoNLL-2003 NER"
_ENTITY_METRICS = ("f1", "precision", "recall")
_PAIR = ("sentence1", "sentence2")

BUILT_IN: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        _synthetic(
            "syn_agree",
            "synthetic single sentence: do the nouns around 'with' share a topic?",
            pair=False,
        ),
        _synthetic(
            "syn_chain", "synthetic sentence pair: does B's subject continue A's object?", pair=True
        ),
        # GLUE, with its official metrics; the first is the one the paper's tables report
        # (MRPC and QQP: F1 as in Table 1; Table 5 reports MRPC accuracy, also computed).
        _glue(
            "cola", "GLUE CoLA: grammatical acceptability", ("matthews_corr",), ("sentence", None)
        ),
        _glue("sst2", "GLUE SST-2: sentiment", ("accuracy",), ("sentence", None)),
        _glue("mrpc", "GLUE MRPC: paraphrase", ("f1", "accuracy"), _PAIR),
        _glue("stsb", "GLUE STS-B: similarity (regression 0-5)", ("spearman", "pearson"), _PAIR),
        _glue(
            "qqp", "GLUE QQP: duplicate questions", ("f1", "accuracy"), ("question1", "question2")
        ),
        _glue(
            "mnli",
            "GLUE MNLI: entailment (3 classes); dev = matched, also mismatched",
            ("accuracy",),
            ("premise", "hypothesis"),
            extra_dev_splits=("dev_mismatched",),
            hub_dev_split={"dev": "validation_matched", "dev_mismatched": "validation_mismatched"},
        ),
        _glue(
            "qnli", "GLUE QNLI: question-answer entailment", ("accuracy",), ("question", "sentence")
        ),
        _glue("rte", "GLUE RTE: entailment", ("accuracy",), _PAIR),
        _glue("wnli", "GLUE WNLI: pronoun entailment", ("accuracy",), _PAIR),
        TaskSpec(
            "conll2003",
            f"{_NER} (fine-tuned): first sub-token of each word tagged; entity-level F1 "
            "(conlleval)",
            "tagging",
            "conll",
            pair=False,
            num_labels=9,
            metrics=_ENTITY_METRICS,
            **_size("conll2003"),
        ),
        TaskSpec(
            "conll2003_features",
            f"{_NER}, feature-based: frozen encoder, concat of the last four layers -> 2-layer "
            "BiLSTM (Table 8's third column)",
            "tagging",
            "conll",
            pair=False,
            num_labels=9,
            metrics=_ENTITY_METRICS,
            fixed_head=("features", 0, "concat_last_four"),
            **_size("conll2003"),
        ),
        _squad("squad_v1", "SQuAD v1.1: answer span in a paragraph; EM/F1 (official definitions)"),
        _squad("squad_v2", "SQuAD v2.0: span or no answer; no-answer threshold tuned on dev"),
        TaskSpec(
            "swag",
            "SWAG: pick the most plausible of 4 continuations (multiple choice)",
            "multiple_choice",
            "swag",
            pair=True,
            num_labels=4,
            metrics=("accuracy",),
            **_size("swag"),
        ),
    ]
}
