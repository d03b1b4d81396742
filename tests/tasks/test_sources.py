"""Task registry and data sources: GLUE from local files or the Hub, slices, data identity."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bertabl.errors import DataError, MatrixError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.schema import DataSection, TaskData
from bertabl.tasks import sources
from bertabl.tasks.builtin import BUILT_IN as TASKS
from tests.conftest import TINY_MATRIX


def task_data(task: str, data: dict):
    """The task's data for a `data` section given as a dict (the plan's way, by task name)."""
    section = DataSection.model_validate(data)
    return sources.task_data(TASKS[task], section.tasks.get(task, TaskData()), section)


def load_split(task: str, split: str, data):
    return sources.load_split(TASKS[task], split, data)


def train_examples(task: str, data) -> int:
    return sources.train_examples(TASKS[task], data)


DATA = {"glue_dir": "", "tasks": {}, "synthetic": {}}


def _data(glue_dir: Path, **task_settings) -> dict:
    return {"glue_dir": str(glue_dir), "tasks": task_settings, "synthetic": {}}


def test_every_glue_task_has_its_official_metrics():
    expected = {
        "cola": ("matthews_corr",),
        "sst2": ("accuracy",),
        "mrpc": ("f1", "accuracy"),
        "stsb": ("spearman", "pearson"),
        "qqp": ("f1", "accuracy"),
        "mnli": ("accuracy",),
        "qnli": ("accuracy",),
        "rte": ("accuracy",),
        "wnli": ("accuracy",),
    }
    assert {n: TASKS[n].metrics for n in expected} == expected
    assert TASKS["stsb"].regression and TASKS["mnli"].num_labels == 3
    assert TASKS["mnli"].extra_dev_splits == ("dev_mismatched",)


def test_local_sst2_full_and_sliced(shared_data: Path):
    data = task_data("sst2", _data(shared_data / "glue"))
    assert data.identity["source"] == "local"
    assert data.identity["sha256"]["dev"] == "54a9c12c77e402fc"  # MANIFEST.md
    dev = load_split("sst2", "dev", data)
    assert len(dev) == 872 and set(dev["label"]) == {0, 1}
    assert dev.column_names == ["text_a", "label"]

    sliced = task_data("sst2", _data(shared_data / "glue", sst2={"max_train_examples": 100}))
    train = load_split("sst2", "train", sliced)
    assert len(train) == 100 and train_examples("sst2", sliced) == 100
    assert load_split("sst2", "train", sliced)["text_a"] == train["text_a"]  # same subset


def test_local_pair_and_regression_tasks(shared_data: Path):
    mrpc = load_split("mrpc", "dev", task_data("mrpc", _data(shared_data / "glue")))
    assert len(mrpc) == 408 and mrpc.column_names == ["text_a", "text_b", "label"]
    stsb = load_split("stsb", "dev", task_data("stsb", _data(shared_data / "glue")))
    assert len(stsb) == 1500
    assert all(isinstance(x, float) and 0 <= x <= 5 for x in stsb["label"])


def test_where_the_files_live_does_not_change_trial_ids(shared_data: Path, tmp_path: Path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(shared_data / "glue" / "SST-2", copy / "SST-2")

    def plan_ids(glue_dir: Path) -> list[str]:
        raw = tomllib.loads(TINY_MATRIX)
        raw["finetune"]["tasks"] = ["sst2"]
        raw["data"] = raw.get("data", {}) | {"glue_dir": str(glue_dir)}
        raw["data"]["tasks"] = {"sst2": {"max_train_examples": 50, "max_dev_examples": 20}}
        return [t.id for t in build_plan(validate(raw, "m.toml"), "m.toml").finetune]

    assert plan_ids(shared_data / "glue") == plan_ids(copy)
    (copy / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nchanged .\t1\n")
    assert plan_ids(shared_data / "glue") != plan_ids(copy)  # other content, other trials


def test_missing_glue_folder_is_an_error_at_plan_time(tmp_path: Path):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["tasks"] = ["rte"]
    raw["data"] = raw.get("data", {}) | {"glue_dir": str(tmp_path / "nowhere")}
    with pytest.raises(DataError) as info:
        build_plan(validate(raw, "m.toml"), "m.toml")
    message = str(info.value)
    assert message.startswith("m.toml: data.glue_dir (task rte): ")
    assert "nowhere/dev.tsv" in message or "nowhere/train.tsv" in message
    assert "RTE" in message  # says which layout it expected


def test_unknown_task_in_data_tasks_is_a_matrix_error():
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"] = raw.get("data", {}) | {"tasks": {"sst3": {}}}
    with pytest.raises(MatrixError, match=r"data\.tasks\.sst3: .*unknown task 'sst3'"):
        validate(raw, "m.toml")


def test_hub_source_maps_columns(monkeypatch):
    # The Hub is not reachable in tests: stand in for datasets.load_dataset with the columns the
    # nyu-mll/glue dataset has, and check the mapping onto text_a/text_b/label.
    import datasets

    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(
            {"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [0, 2], "idx": [0, 1]}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = task_data("mnli", {"tasks": {"mnli": {"source": "hub"}}, "synthetic": {}})
    assert data.identity == {
        "source": "hub",
        "dataset": "nyu-mll/glue",
        "config": "mnli",
        "max_train_examples": 0,
        "max_dev_examples": 0,
    }
    split = load_split("mnli", "dev_mismatched", data)
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert split.to_dict() == {"text_a": ["p1", "p2"], "text_b": ["h1", "h2"], "label": [0, 2]}


def test_hub_source_offline_says_what_to_do(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    data = task_data("sst2", {"tasks": {"sst2": {"source": "hub"}}, "synthetic": {}})
    with pytest.raises(DataError, match="offline, use the local files"):
        load_split("sst2", "train", data)


def test_conll2003_task_from_the_original_files(shared_data: Path):
    data = task_data("conll2003", {"conll_dir": str(shared_data / "conll2003"), "tasks": {}})
    dev = load_split("conll2003", "dev", data)
    assert len(dev) == 3250 and dev.column_names == ["tokens", "tags", "document", "index"]
    assert dev[0]["document"] == 0 and dev[3249]["index"] == 3249  # MANIFEST.md: 3,250
    assert TASKS["conll2003"].family == "tagging" and TASKS["conll2003"].num_labels == 9
    sliced = task_data(
        "conll2003",
        {
            "conll_dir": str(shared_data / "conll2003"),
            "tasks": {"conll2003": {"max_train_examples": 10}},
        },
    )
    assert len(load_split("conll2003", "train", sliced)) == 10


def test_missing_conll_folder_names_its_key(tmp_path: Path):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["tasks"] = ["conll2003"]
    raw["data"] = raw.get("data", {}) | {"conll_dir": str(tmp_path / "none")}
    with pytest.raises(
        DataError, match=r"m\.toml: data\.conll_dir \(task conll2003\): .*eng\.train"
    ):
        build_plan(validate(raw, "m.toml"), "m.toml")


def test_bilstm_head_on_a_tagging_task_is_an_error(shared_data: Path):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["tasks"] = ["conll2003"]
    raw["finetune"]["head"] = "bilstm"
    raw["data"] = raw.get("data", {}) | {"conll_dir": str(shared_data / "conll2003")}
    with pytest.raises(MatrixError, match="task conll2003 is tagging"):
        build_plan(validate(raw, "m.toml"), "m.toml")


def test_squad_from_the_hub_maps_to_read_squad_rows(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(
            [
                {
                    "id": "q1",
                    "title": "T",
                    "context": "Paris is in France.",
                    "question": "Where?",
                    "answers": {"text": ["France"], "answer_start": [12]},
                },
                {
                    "id": "q2",
                    "title": "T",
                    "context": "Paris is in France.",
                    "question": "Who?",
                    "answers": {"text": [], "answer_start": []},
                },
            ]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = task_data("squad_v2", {"tasks": {"squad_v2": {"source": "hub"}}, "synthetic": {}})
    assert data.identity["dataset"] == "rajpurkar/squad_v2"
    rows = list(load_split("squad_v2", "dev", data))
    assert calls == [("rajpurkar/squad_v2", None, "validation")]
    assert [r["is_impossible"] for r in rows] == [False, True]
    assert rows[0]["answers"] == {"text": ["France"], "answer_start": [12]}
