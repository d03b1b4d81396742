"""Fine-tuning tasks: what each one is, and how to load its splits as `datasets.Dataset`s.

Every loaded split has the same columns, whatever the source: `text_a`, optionally `text_b`
(sentence-pair tasks), and `label` (an int class id, or a float for regression). Models and
collators only ever see those.

Sources: the embedded synthetic suite; GLUE from local TSV folders in their original layout
(`data.glue_dir`, or `data.tasks.<task>.path`); or GLUE from the Hugging Face Hub
(`data.tasks.<task>.source = "hub"`, when online); CoNLL-2003 NER from its original column
files (`data.conll_dir`: eng.train, eng.testa); SQuAD v1.1/v2.0 from the official JSON files
(`data.squad_dir`); SWAG from its original CSV files (`data.swag_dir`). Tagging tasks have
`tokens` and `tags` columns (word lists, tags as in the file) instead of text/label; SQuAD and
SWAG splits hold one row per question as their readers return them.

A task's *identity* (what goes into trial ids) is what determines its examples: the synthetic
seed and sizes, or the SHA-256 of the local files, or the hub dataset name, plus any slice sizes.
Where the files live is its *location*, which is not part of the identity: the same data on
another machine, at another path, is the same trial.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertabl.data import synthetic
from bertabl.errors import DataError

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its input shape, labels and metrics (the first metric is the main one)."""

    name: str
    description: str
    pair: bool
    num_labels: int  # 1 = regression
    metrics: tuple[str, ...]
    synthetic: bool = False
    glue: str | None = None  # the GLUE reader's task name
    hub_columns: tuple[str, str | None] = ("sentence", None)  # text columns on the Hub
    extra_dev_splits: tuple[str, ...] = ()  # evaluated too, reported as dev_<split>_<metric>
    family: str = "classification"  # or "tagging" (token-level labels, entity-level F1)
    # A task whose head is part of its definition, e.g. Table 8's "NER (feature-based)" column.
    fixed_head: tuple[str, int, str | None] | None = None
    hub_dev_split: dict[str, str] = field(default_factory=lambda: {"dev": "validation"})
    # A task defined in a matrix (data.custom_tasks): its definition, as data/custom.py reads it
    custom: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def regression(self) -> bool:
        return self.num_labels == 1


def _glue(name: str, description: str, pair: bool, num_labels: int, metrics, hub, **kw):
    return TaskSpec(name, description, pair, num_labels, metrics, glue=name, hub_columns=hub, **kw)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec(
            name="syn_agree",
            description="synthetic single sentence: do the nouns around 'with' share a topic?",
            pair=False,
            num_labels=2,
            metrics=("accuracy",),
            synthetic=True,
        ),
        TaskSpec(
            name="syn_chain",
            description="synthetic sentence pair: does B's subject continue A's object?",
            pair=True,
            num_labels=2,
            metrics=("accuracy",),
            synthetic=True,
        ),
        # GLUE, with its official metrics; the first is the one the paper's tables report
        # (MRPC and QQP: F1 as in Table 1; Table 5 reports MRPC accuracy, also computed).
        _glue(
            "cola",
            "GLUE CoLA: grammatical acceptability",
            False,
            2,
            ("matthews_corr",),
            ("sentence", None),
        ),
        _glue("sst2", "GLUE SST-2: sentiment", False, 2, ("accuracy",), ("sentence", None)),
        _glue(
            "mrpc", "GLUE MRPC: paraphrase", True, 2, ("f1", "accuracy"), ("sentence1", "sentence2")
        ),
        _glue(
            "stsb",
            "GLUE STS-B: similarity (regression 0-5)",
            True,
            1,
            ("spearman", "pearson"),
            ("sentence1", "sentence2"),
        ),
        _glue(
            "qqp",
            "GLUE QQP: duplicate questions",
            True,
            2,
            ("f1", "accuracy"),
            ("question1", "question2"),
        ),
        _glue(
            "mnli",
            "GLUE MNLI: entailment (3 classes); dev = matched, also mismatched",
            True,
            3,
            ("accuracy",),
            ("premise", "hypothesis"),
            extra_dev_splits=("dev_mismatched",),
            hub_dev_split={"dev": "validation_matched", "dev_mismatched": "validation_mismatched"},
        ),
        _glue(
            "qnli",
            "GLUE QNLI: question-answer entailment",
            True,
            2,
            ("accuracy",),
            ("question", "sentence"),
        ),
        _glue("rte", "GLUE RTE: entailment", True, 2, ("accuracy",), ("sentence1", "sentence2")),
        _glue(
            "wnli",
            "GLUE WNLI: pronoun entailment",
            True,
            2,
            ("accuracy",),
            ("sentence1", "sentence2"),
        ),
        TaskSpec(
            name="conll2003",
            description="CoNLL-2003 NER (fine-tuned): first sub-token of each word tagged; "
            "entity-level F1 (conlleval)",
            pair=False,
            num_labels=9,
            metrics=("f1", "precision", "recall"),
            family="tagging",
        ),
        TaskSpec(
            name="conll2003_features",
            description="CoNLL-2003 NER, feature-based: frozen encoder, concat of the last four "
            "layers -> 2-layer BiLSTM (Table 8's third column)",
            pair=False,
            num_labels=9,
            metrics=("f1", "precision", "recall"),
            family="tagging",
            fixed_head=("features", 0, "concat_last_four"),
        ),
        TaskSpec(
            name="squad_v1",
            description="SQuAD v1.1: answer span in a paragraph; EM/F1 (official definitions)",
            pair=True,
            num_labels=0,
            metrics=("f1", "exact_match"),
            family="span_qa",
        ),
        TaskSpec(
            name="squad_v2",
            description="SQuAD v2.0: span or no answer; no-answer threshold tuned on dev",
            pair=True,
            num_labels=0,
            metrics=("f1", "exact_match"),
            family="span_qa",
        ),
        TaskSpec(
            name="swag",
            description="SWAG: pick the most plausible of 4 continuations (multiple choice)",
            pair=True,
            num_labels=4,
            metrics=("accuracy",),
            family="multiple_choice",
        ),
    ]
}
BUILT_IN = frozenset(TASKS)


def custom_spec(name: str, definition: dict[str, Any]) -> TaskSpec:
    """The TaskSpec of a matrix-defined task (data.custom_tasks.<name>)."""
    what = "regression" if definition["regression"] else "classification"
    return TaskSpec(
        name=name,
        description=definition.get("description") or f"{name} ({what}, defined in the matrix)",
        pair=definition["text_pair"] is not None,
        num_labels=1 if definition["regression"] else len(definition["labels"]),
        metrics=tuple(definition["metrics"]),
        custom=definition,
    )


# Names a matrix being validated defines in data.custom_tasks, so that a task whose definition
# is invalid is reported as such in finetune.tasks, not as an unknown task.
DECLARED: set[str] = set()


def register_custom_task(name: str, definition: dict[str, Any]) -> TaskSpec:
    """Make a matrix-defined task known by name in this process (plans, reports and `bertabl
    tasks` look tasks up in TASKS); a later matrix may redefine it, a built-in task not."""
    if name in BUILT_IN:
        raise ValueError(f"'{name}' is a built-in task; give your task another name")
    TASKS[name] = custom_spec(name, definition)
    return TASKS[name]


def task_spec(task: str, data: dict[str, Any]) -> TaskSpec:
    """The spec of a trial's task, wherever the trial runs: a custom task's definition travels
    in its data identity, since a Ray worker has not seen the matrix that defined it."""
    definition = data["identity"].get("definition")
    if data["identity"]["source"] == "custom":
        return custom_spec(task, definition)
    return TASKS[task]


CONLL_FILES = {"train": "eng.train", "dev": "eng.testa"}
SWAG_FILES = {"train": "train.csv", "dev": "val.csv"}
SQUAD_HUB = {"squad_v1": "rajpurkar/squad", "squad_v2": "rajpurkar/squad_v2"}
SQUAD_FILES = {
    "squad_v1": {"train": "train-v1.1.json", "dev": "dev-v1.1.json"},
    "squad_v2": {"train": "train-v2.0.json", "dev": "dev-v2.0.json"},
}

_GENERATORS = {"syn_agree": synthetic.generate_agree, "syn_chain": synthetic.generate_chain}
SLICE_SEED = 0  # slices are seeded subsets, the same on every machine and run


def task_data(task: str, data_config: dict[str, Any]) -> dict[str, Any]:
    """The task's data config for a trial: {"identity": ..., "location": ...}.

    Checks that local files exist and hashes them, so a missing file is reported when the plan
    is built, before anything runs.
    """
    spec = TASKS[task]
    if spec.synthetic:
        syn = data_config["synthetic"]
        identity = {
            "source": "synthetic",
            "seed": syn["seed"],
            "train_examples": syn["train_examples"],
            "dev_examples": syn["dev_examples"],
        }
        return {"identity": identity, "location": {}}
    settings = data_config.get("tasks", {}).get(task, {})
    slices = {
        "max_train_examples": settings.get("max_train_examples", 0),
        "max_dev_examples": settings.get("max_dev_examples", 0),
    }
    if spec.custom is not None:
        from bertabl.data import custom

        return custom.task_data(spec.custom, slices)
    if spec.family == "span_qa" and settings.get("source") == "hub":
        name = settings.get("hub_dataset", "nyu-mll/glue")
        if name == "nyu-mll/glue":  # the schema's default is GLUE's; SQuAD's own otherwise
            name = SQUAD_HUB[task]
        identity = {"source": "hub", "dataset": name, "config": None, **slices}
        return {"identity": identity, "location": {}}
    if spec.family in ("tagging", "span_qa", "multiple_choice"):
        layout, key = {
            "tagging": (CONLL_FILES, "conll_dir"),
            "span_qa": (SQUAD_FILES.get(task), "squad_dir"),
            "multiple_choice": (SWAG_FILES, "swag_dir"),
        }[spec.family]
        folder = Path(settings.get("path") or data_config[key]).resolve()
        files = {}
        for split, name in layout.items():
            path = folder / name
            if not path.is_file():
                raise DataError(
                    f"{path}: file not found; expected the original files "
                    f"{', '.join(layout.values())} in {folder}"
                )
            files[split] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        identity = {"source": "local", "format": spec.family, "sha256": files, **slices}
        return {"identity": identity, "location": {"path": str(folder)}}
    if settings.get("source", "local") == "hub":
        identity = {
            "source": "hub",
            "dataset": settings.get("hub_dataset", "nyu-mll/glue"),
            "config": spec.glue,
            **slices,
        }
        return {"identity": identity, "location": {}}
    from bertabl.data.formats.glue import glue_file

    folder = Path(settings.get("path") or data_config["glue_dir"]).resolve()
    files = {}
    for split in ("train", "dev", *spec.extra_dev_splits):
        path = glue_file(spec.glue, folder, split)
        files[split] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    identity = {"source": "local", "format": "glue-tsv", "sha256": files, **slices}
    return {"identity": identity, "location": {"path": str(folder)}}


def train_examples(task: str, data: dict[str, Any]) -> int:
    """How many training examples the task has (for compute estimates)."""
    identity = data["identity"]
    if identity["source"] == "synthetic":
        return identity["train_examples"]
    if identity["max_train_examples"]:
        return identity["max_train_examples"]
    if identity["source"] == "custom" and "sha256" in identity:
        from bertabl.data import custom

        return len(custom.read_split("train", data))
    if identity["source"] == "local":
        return len(_read_local(task, "train", data))
    return 0  # unknown without downloading; estimates then leave fine-tuning out


def load_split(task: str, split: str, data: dict[str, Any]) -> datasets.Dataset:
    """One split ("train", "dev", or an extra dev split) of `task` from its source."""
    import datasets

    spec = task_spec(task, data)
    identity = data["identity"]
    if spec.custom is not None:
        from bertabl.data import custom

        rows = _slice(custom.read_split(split, data), task, split, identity)
        columns = ["text_a", "text_b", "label"] if spec.pair else ["text_a", "label"]
        return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
    if spec.family == "tagging":
        rows = _slice(_read_local(task, split, data), task, split, identity)
        return datasets.Dataset.from_dict(
            {"tokens": [r["tokens"] for r in rows], "tags": [r["tags"] for r in rows]}
        )
    if spec.family == "span_qa" and identity["source"] == "hub":
        rows = _slice(_read_hub_squad(split, identity), task, split, identity)
        return datasets.Dataset.from_list(rows)
    if spec.family in ("span_qa", "multiple_choice"):
        return datasets.Dataset.from_list(
            _slice(_read_local(task, split, data), task, split, identity)
        )
    if identity["source"] == "synthetic":
        n = identity["dev_examples" if split.startswith("dev") else "train_examples"]
        seed = synthetic.split_seed(identity["seed"], task, split)
        return datasets.Dataset.from_dict(_GENERATORS[task](seed, n))
    rows = (
        _read_local(task, split, data)
        if identity["source"] == "local"
        else _read_hub(spec, split, identity)
    )
    rows = _slice(rows, task, split, identity)
    columns = ["text_a", "text_b", "label"] if spec.pair else ["text_a", "label"]
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def _slice(rows: list, task: str, split: str, identity: dict[str, Any]) -> list:
    """A seeded subset of `rows` (original order kept) when the task's settings ask for one."""
    limit = identity["max_train_examples" if split == "train" else "max_dev_examples"]
    if limit and limit < len(rows):
        keep = sorted(random.Random(f"{SLICE_SEED}/{task}/{split}").sample(range(len(rows)), limit))
        rows = [rows[i] for i in keep]
    return rows


def _read_local(task: str, split: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    folder = Path(data["location"]["path"])
    if TASKS[task].family == "tagging":
        from bertabl.data.formats.conll import read_conll2003

        return read_conll2003(folder / CONLL_FILES[split])
    if TASKS[task].family == "span_qa":
        from bertabl.data.formats.squad import read_squad

        return read_squad(folder / SQUAD_FILES[task][split])
    if TASKS[task].family == "multiple_choice":
        from bertabl.data.formats.swag import read_swag

        return read_swag(folder / SWAG_FILES[split])
    from bertabl.data.formats.glue import read_glue

    return read_glue(TASKS[task].glue, folder, split)


def _read_hub_squad(split: str, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """SQuAD from the Hub (rajpurkar/squad, rajpurkar/squad_v2): the same rows as read_squad."""
    table = _load_hub(identity["dataset"], None, "train" if split == "train" else "validation")
    return [
        {
            "id": row["id"],
            "title": row["title"],
            "context": row["context"],
            "question": row["question"],
            "answers": {
                "text": list(row["answers"]["text"]),
                "answer_start": list(row["answers"]["answer_start"]),
            },
            "is_impossible": not row["answers"]["text"],
        }
        for row in table
    ]


def _load_hub(name: str, config: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the datasets library raises many types for "not reachable"
        raise DataError(
            f"could not load {name}{'/' + config if config else ''} ({split}) from the Hugging "
            f"Face Hub: {err}; offline, use the local files (data.glue_dir / data.squad_dir)"
        ) from None


def _read_hub(spec: TaskSpec, split: str, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """GLUE from the Hugging Face Hub (needs the network, unlike every other source)."""
    hub_split = "train" if split == "train" else spec.hub_dev_split[split]
    table = _load_hub(identity["dataset"], identity["config"], hub_split)
    first, second = spec.hub_columns
    return [
        {"text_a": row[first], "text_b": row[second] if second else None, "label": row["label"]}
        for row in table
    ]
