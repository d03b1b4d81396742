"""Where a task's examples come from: identity (for trial ids) and loading, per data source.

Every loaded split has the same columns, whatever the source: `text_a`, optionally `text_b`
(sentence-pair tasks), and `label` (an int class id, or a float for regression). Tagging tasks
have `tokens` and `tags` columns (word lists, tags as in the file) instead; SQuAD and SWAG splits
hold one row per question as their readers return them.

Sources: the embedded synthetic suite; GLUE from local TSV folders in their original layout
(`data.glue_dir`, or `data.tasks.<task>.path`), or from the Hugging Face Hub
(`data.tasks.<task>.source = "hub"`, when online); CoNLL-2003 NER from its original column
files (`data.conll_dir`: eng.train, eng.testa); SQuAD v1.1/v2.0 from the official JSON files
(`data.squad_dir`) or the Hub; SWAG from its original CSV files (`data.swag_dir`); and tasks a
matrix defines (tasks/custom.py).

A task's *identity* (what goes into trial ids) is what determines its examples: the synthetic
seed and sizes, or the SHA-256 of the local files, or the hub dataset name, plus any slice sizes.
Where the files live is its *location*, which is not part of the identity: the same data on
another machine, at another path, is the same trial. Both are written and read only here.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bertabl.data import synthetic
from bertabl.data.fingerprints import file_sha256
from bertabl.data.hub import load_hub
from bertabl.errors import DataError
from bertabl.tasks import custom
from bertabl.tasks.spec import TaskSpec
from bertabl.trial.data import DataRef

if TYPE_CHECKING:
    import datasets


class TaskSettings(Protocol):
    """`data.tasks.<task>` of a matrix (matrix/schema.py: TaskData)."""

    source: str
    path: str | None
    hub_dataset: str
    max_train_examples: int
    max_dev_examples: int


class DataFolders(Protocol):
    """The `data` section's folders and synthetic sizes (matrix/schema.py: DataSection)."""

    glue_dir: str
    conll_dir: str
    squad_dir: str
    swag_dir: str
    synthetic: Any


# The original files of each single-layout source, by split.
FILES = {
    "conll": {"train": "eng.train", "dev": "eng.testa"},
    "swag": {"train": "train.csv", "dev": "val.csv"},
    "squad_v1": {"train": "train-v1.1.json", "dev": "dev-v1.1.json"},
    "squad_v2": {"train": "train-v2.0.json", "dev": "dev-v2.0.json"},
}
# Labeled test files of single-layout sources, optional (CoNLL-2003's eng.testb).
TEST_FILES = {"conll": "eng.testb"}
FOLDER_KEY = {"glue": "glue_dir", "conll": "conll_dir", "squad": "squad_dir", "swag": "swag_dir"}
SQUAD_HUB = {"squad_v1": "rajpurkar/squad", "squad_v2": "rajpurkar/squad_v2"}
GLUE_HUB = "nyu-mll/glue"
SLICE_SEED = 0  # slices are seeded subsets, the same on every machine and run
_GENERATORS = {"syn_agree": synthetic.generate_agree, "syn_chain": synthetic.generate_chain}
# The family tag local identities carry (kept from before sources were their own module, so
# trial ids did not change).
_LOCAL_FORMAT = {"conll": "tagging", "squad": "span_qa", "swag": "multiple_choice"}


def task_data(spec: TaskSpec, settings: TaskSettings, data: DataFolders) -> DataRef:
    """The task's data for its trials. Local files are checked and hashed now, so a missing
    file is reported when the plan is built, before anything runs."""
    if spec.source == "synthetic":
        sizes = {"seed", "train_examples", "dev_examples"}
        identity = {"source": "synthetic", **data.synthetic.model_dump(include=sizes)}
        return DataRef(identity=identity, location={})
    slices = {
        "max_train_examples": settings.max_train_examples,
        "max_dev_examples": settings.max_dev_examples,
    }
    if spec.source == "custom":
        return custom.task_data(spec.custom, slices)
    if settings.source == "hub" and spec.source in ("glue", "squad"):
        name, config = settings.hub_dataset, spec.name if spec.source == "glue" else None
        if spec.source == "squad" and name == GLUE_HUB:  # the schema's default is GLUE's
            name = SQUAD_HUB[spec.name]
        identity = {"source": "hub", "dataset": name, "config": config, **slices}
        return DataRef(identity=identity, location={})
    folder = Path(settings.path or getattr(data, FOLDER_KEY[spec.source])).resolve()
    found = local_files(spec, folder) | test_files(spec, folder)
    files = {split: _hash(path) for split, path in found.items()}
    identity: dict[str, Any] = {"source": "local"}
    identity["format"] = _LOCAL_FORMAT.get(spec.source, "glue-tsv")
    identity |= {"sha256": files, **slices}
    return DataRef(identity=identity, location={"path": str(folder)})


def local_files(spec: TaskSpec, folder: Path) -> dict[str, Path]:
    """The task's files in `folder`, by split; a DataError names what is missing."""
    if spec.source == "glue":
        from bertabl.data.formats.glue import glue_file

        splits = ("train", "dev", *spec.extra_dev_splits)
        return {split: glue_file(spec.name, folder, split) for split in splits}
    layout = FILES[spec.name if spec.source == "squad" else spec.source]
    paths = {split: folder / name for split, name in layout.items()}
    for path in paths.values():
        if not path.is_file():
            raise DataError(
                f"{path}: file not found; expected the original files "
                f"{', '.join(layout.values())} in {folder}"
            )
    return paths


def test_files(spec: TaskSpec, folder: Path) -> dict[str, Path]:
    """The task's test files found beside its train/dev files, by split: "test" (labeled:
    scored) and GLUE's unlabeled "glue_test" ("glue_test_mismatched" for MNLI: predicted only,
    for the GLUE server). A task may have none."""
    if spec.source == "glue":
        from bertabl.data.formats import glue_test

        found = glue_test.unlabeled_test_files(spec.name, folder)
        labeled = glue_test.labeled_test_file(spec.name, folder)
        return found | ({"test": labeled} if labeled else {})
    name = TEST_FILES.get(spec.source)
    return {"test": folder / name} if name and (folder / name).is_file() else {}


def test_splits(data: DataRef) -> tuple[str, ...]:
    """The test splits a task's data has: "test" (labeled: scored) and "glue_test*" (GLUE's
    unlabeled test sets: predicted only). Hub data has none here."""
    identity = data.identity
    named = {*identity.get("sha256", {}), *identity.get("splits", {})}
    return tuple(sorted(s for s in named if s == "test" or s.startswith("glue_test")))


def train_examples(spec: TaskSpec, data: DataRef) -> int:
    """How many training examples the task has (for compute estimates)."""
    identity = data.identity
    if identity["source"] == "synthetic":
        return identity["train_examples"]
    if identity["max_train_examples"]:
        return identity["max_train_examples"]
    if identity["source"] == "custom" and "sha256" in identity:
        return len(custom.read_split("train", data))
    if identity["source"] == "local":
        return len(_read_local(spec, "train", data))
    return spec.train_examples  # the Hub's or absent data: the standard split's size (0: unknown)


def load_split(spec: TaskSpec, split: str, data: DataRef) -> datasets.Dataset:
    """One split ("train", "dev", or an extra dev split) of the task from its source."""
    import datasets

    identity = data.identity
    if identity["source"] == "synthetic":
        n = identity["dev_examples" if split.startswith("dev") else "train_examples"]
        seed = synthetic.split_seed(identity["seed"], spec.name, split)
        return datasets.Dataset.from_dict(_GENERATORS[spec.name](seed, n))
    rows = _slice(read_rows(spec, split, data), spec.name, split, identity)
    if spec.family == "tagging":
        columns = ("tokens", "tags", "document", "index")
        return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
    if spec.family in ("span_qa", "multiple_choice"):
        return datasets.Dataset.from_list(rows)
    columns = ["text_a", "text_b", "label"] if spec.pair else ["text_a", "label"]
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def documents(spec: TaskSpec, split: str, data: DataRef) -> list[dict[str, Any]]:
    """Every sentence of a tagging split in file order, whatever the slice: the documents a
    sliced sentence's context comes from (rows with "tokens", "document", "index")."""
    return read_rows(spec, split, data)


def read_rows(spec: TaskSpec, split: str, data: DataRef) -> list[dict[str, Any]]:
    """Every example of a split, unsliced, as its reader returns it (tagging rows: with their
    position in the file)."""
    identity = data.identity
    if spec.source == "custom":
        rows = custom.read_split(split, data)
    elif identity["source"] == "local":
        rows = _read_local(spec, split, data)
    elif spec.source == "squad":
        rows = _read_hub_squad(split, identity)
    else:
        rows = _read_hub_glue(spec, split, identity)
    if spec.family == "tagging":  # where each sentence stands in its file, for its context
        rows = [row | {"index": i} for i, row in enumerate(rows)]
    return rows


def _hash(path: Path) -> str:
    return file_sha256(path).hex()[:16]


def _slice(rows: list, task: str, split: str, identity: dict[str, Any]) -> list:
    """A seeded subset of `rows` (original order kept) when the task's settings ask for one.
    Test splits are never sliced: their scores stand beside the paper's."""
    if split == "test" or split.startswith("glue_test"):
        return rows
    limit = identity["max_train_examples" if split == "train" else "max_dev_examples"]
    if limit and limit < len(rows):
        keep = sorted(random.Random(f"{SLICE_SEED}/{task}/{split}").sample(range(len(rows)), limit))
        rows = [rows[i] for i in keep]
    return rows


def _read_local(spec: TaskSpec, split: str, data: DataRef) -> list[dict[str, Any]]:
    folder = Path(data.location["path"])
    if spec.source == "glue":
        from bertabl.data.formats import glue_test
        from bertabl.data.formats.glue import read_glue

        if split == "test":
            return glue_test.read_labeled_test(spec.name, test_files(spec, folder)["test"])
        if split.startswith("glue_test"):
            return glue_test.read_unlabeled_test(spec.name, test_files(spec, folder)[split])
        return read_glue(spec.name, folder, split)
    if split == "test":
        path = folder / TEST_FILES[spec.source]
    else:
        path = folder / FILES[spec.name if spec.source == "squad" else spec.source][split]
    if spec.source == "conll":
        from bertabl.data.formats.conll import read_conll2003

        return read_conll2003(path)
    if spec.source == "squad":
        from bertabl.data.formats.squad import read_squad

        return read_squad(path)
    from bertabl.data.formats.swag import read_swag

    return read_swag(path)


def _read_hub_squad(split: str, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """SQuAD from the Hub (rajpurkar/squad, rajpurkar/squad_v2): the same rows as read_squad."""
    table = load_hub(identity["dataset"], None, "train" if split == "train" else "validation")
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


def _read_hub_glue(spec: TaskSpec, split: str, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """GLUE from the Hugging Face Hub (needs the network, unlike every other source)."""
    hub_split = "train" if split == "train" else spec.hub_dev_split[split]
    table = load_hub(identity["dataset"], identity["config"], hub_split)
    first, second = spec.hub_columns
    return [
        {"text_a": row[first], "text_b": row[second] if second else None, "label": row["label"]}
        for row in table
    ]
