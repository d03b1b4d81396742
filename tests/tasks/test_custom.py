"""Tasks defined in the matrix (data.custom_tasks): CSV / TSV / JSON Lines, checked line by line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bertabl.errors import DataError, MatrixError
from bertabl.finetune import metrics
from bertabl.finetune.epoch_loop import finetune
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.pretrain.step_loop import pretrain
from bertabl.tasks import sources
from bertabl.tasks.catalogue import TaskCatalogue, spec_of
from bertabl.training import TrialRuntime
from tests.conftest import FIXTURES as TEST_FIXTURES
from tests.conftest import TINY_MATRIX

FIXTURES = TEST_FIXTURES / "custom"
CPU = torch.device("cpu")


def _reviews(folder: Path = FIXTURES, **changes) -> dict:
    return {
        "format": "csv",
        "train": str(folder / "reviews_train.csv"),
        "dev": str(folder / "reviews_dev.csv"),
        "text": "review",
        "label": "stars",
        "labels": ["neg", "mid", "pos"],
    } | changes


def _similarity(**changes) -> dict:
    path = str(FIXTURES / "similarity.jsonl")
    return {
        "format": "jsonl",
        "train": path,
        "dev": path,
        "text": "a",
        "text_pair": "b",
        "label": "score",
        "regression": True,
    } | changes


def load_split(task: str, split: str, data):
    return sources.load_split(spec_of(task, data), split, data)


def _plan(custom: dict[str, dict], tasks: list[str] | None = None, **finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"]["custom_tasks"] = custom
    raw["finetune"]["tasks"] = tasks or list(custom)
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_csv_classification_rows_labels_and_metrics():
    plan = _plan({"reviews": _reviews()})
    spec = plan.matrix.spec("reviews")
    assert (spec.pair, spec.num_labels, spec.metrics) == (False, 3, ("accuracy", "macro_f1"))
    data = plan.finetune[0].config.task_data
    train = load_split("reviews", "train", data)
    assert train.column_names == ["text_a", "label"]
    # quoted commas, a quoted line break and doubled quotes are CSV, not errors
    assert train["text_a"][0] == "Great food, friendly staff."
    assert train["text_a"][2] == "It was fine.\nNothing special."
    assert train["text_a"][3] == 'Loved the "secret" menu'
    assert train["label"] == [2, 0, 1, 2, 0, 1]  # ids in the declared order neg, mid, pos
    assert plan.finetune[0].tokens == 6 * 32  # epochs x train examples x max_seq_len


def test_jsonl_pair_regression():
    plan = _plan({"sim": _similarity(metrics=["spearman"])})
    dev = load_split("sim", "dev", plan.finetune[0].config.task_data)
    assert dev.column_names == ["text_a", "text_b", "label"]
    assert dev["label"] == [3.8, 0.5, 4.6, 4.0]  # the blank line is skipped; "4.6" is a number
    assert plan.matrix.spec("sim").regression and plan.matrix.spec("sim").metrics == ("spearman",)
    assert plan.matrix.metric_for("sim") == "spearman"


def test_tsv_keeps_quotes_as_text():
    nli = {
        "format": "tsv",
        "train": str(FIXTURES / "nli.tsv"),
        "dev": str(FIXTURES / "nli.tsv"),
        "text": "premise",
        "text_pair": "hypothesis",
        "label": "label",
        "labels": ["entailment", "contradiction"],
        "metrics": ["f1", "accuracy", "matthews_corr"],
    }
    plan = _plan({"nli": nli})
    rows = load_split("nli", "train", plan.finetune[0].config.task_data)
    assert rows["text_a"][1] == '"Quoted' and rows["label"] == [1, 0, 0]


def test_ids_follow_content_not_paths(tmp_path: Path):
    for name in ("reviews_train.csv", "reviews_dev.csv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    here = _plan({"reviews": _reviews()})
    moved = _plan({"reviews": _reviews(tmp_path)})
    assert [t.id for t in here.finetune] == [t.id for t in moved.finetune]
    (tmp_path / "reviews_dev.csv").write_text("review,stars\nfine,mid\n")
    changed = _plan({"reviews": _reviews(tmp_path)})
    assert not {t.id for t in here.finetune} & {t.id for t in changed.finetune}
    relabelled = _plan({"reviews": _reviews(labels=["pos", "mid", "neg"])})
    assert not {t.id for t in here.finetune} & {t.id for t in relabelled.finetune}


def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("text,stars\nhi,pos\n", r"train.csv line 1: no column 'review'; the columns are: text, "),
        ("review,stars\nhi,pos\nbye,meh\n", r"train.csv line 3: label 'meh' is not one of the "),
        ("review,stars\n", r"train.csv: no examples in the train split"),
        ("", r"train.csv: empty file"),
        ('review,stars\n"two\nlines",pos\nx,pos,extra\n', r"train.csv line 4: 3 fields, but"),
    ],
    ids=["unknown-column", "label-outside-set", "empty-split", "empty-file", "ragged-row"],
)
def test_bad_csv_fails_at_plan_time_naming_file_and_line(tmp_path: Path, train, message):
    custom = _reviews(
        train=_write(tmp_path, "train.csv", train), dev=str(FIXTURES / "reviews_dev.csv")
    )
    with pytest.raises(DataError, match=r"m\.toml: data\.custom_tasks\.reviews .*" + message):
        _plan({"reviews": custom})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('{"a": "x", "b": "y", "score": 1}\n{"a": "x", "score": 2}\n', r"line 2: no column 'b'"),
        ('{"a": "x", "b": "y", "score": "high"}\n', r"line 1: label 'high' is not a number"),
        ('{"a": "x", "b": "y", "score": 1}\n\n{"a": "x",\n', r"line 3: not valid JSON"),
        ('["x", "y", 1]\n', r"line 1: expected a JSON object"),
    ],
    ids=["unknown-key", "not-a-number", "bad-json", "not-an-object"],
)
def test_bad_jsonl_names_file_and_line(tmp_path: Path, lines, message):
    path = _write(tmp_path, "sim.jsonl", lines)
    with pytest.raises(DataError, match=r"sim\.jsonl " + message):
        _plan({"sim": _similarity(train=path, dev=path)})


def test_missing_file_names_its_split(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope.csv: file not found \(the dev file\)"):
        _plan({"reviews": _reviews(dev=str(tmp_path / "nope.csv"))})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": []}, "list the label values"),
        ({"labels": ["a", "a"]}, "list the label values"),
        ({"regression": True}, "a regression task has no labels"),
        ({"metrics": ["pearson"]}, r"metrics \['pearson'\] do not apply to 3-label"),
        ({"metrics": ["f1"]}, r"metrics \['f1'\] do not apply"),
        ({"metrics": ["auc"]}, r"data\.custom_tasks\.reviews\.metrics\[0\]"),
        ({"format": "hub"}, "hub_dataset is needed with format = 'hub'"),
        ({"txt": "review"}, r"unknown key"),
    ],
)
def test_definition_errors(changes, message):
    with pytest.raises(MatrixError, match=message):
        _plan({"reviews": _reviews(**changes)})


def test_built_in_names_cannot_be_redefined():
    with pytest.raises(MatrixError, match="'sst2' is a built-in task"):
        _plan({"sst2": _reviews()})


def test_custom_tasks_take_slices_and_selection_metrics():
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"]["custom_tasks"] = {"reviews": _reviews()}
    raw["data"]["tasks"] = {"reviews": {"max_train_examples": 4}}
    raw["finetune"]["tasks"] = ["reviews", "syn_agree"]
    raw["finetune"]["selection_metric"] = {"reviews": "macro_f1"}
    plan = build_plan(validate(raw, "m.toml"))
    trial = next(t for t in plan.finetune if t.task == "reviews")
    assert len(load_split("reviews", "train", trial.config.task_data)) == 4
    assert plan.matrix.metric_for("reviews") == "macro_f1"


def test_a_worker_rebuilds_the_spec_from_the_trial_config():
    """Ray workers never validated the matrix: the definition travels in the trial config."""
    plan = _plan({"reviews": _reviews()})
    data = plan.finetune[0].config.task_data
    assert "reviews" not in TaskCatalogue()  # validating the matrix registered nothing
    spec = spec_of("reviews", data)
    assert (spec.num_labels, spec.metrics, spec.pair) == (3, ("accuracy", "macro_f1"), False)
    assert len(load_split("reviews", "dev", data)) == 4


def test_custom_tasks_fine_tune_and_report_their_metrics(tmp_path: Path):
    plan = _plan({"reviews": _reviews(), "sim": _similarity()})
    pretrain(plan.pretrain[0].config, tmp_path / "pt", TrialRuntime(CPU))
    for task, keys in (("reviews", {"dev_accuracy", "dev_macro_f1"}), ("sim", {"dev_pearson"})):
        trial = cell_trials(plan, plan.rows[0], task)[0]
        result = finetune(
            trial.config, tmp_path / "pt" / "model", tmp_path / task, TrialRuntime(CPU)
        )
        assert keys <= set(result)


def test_macro_and_micro_f1_by_hand():
    predictions = [0, 1, 2, 2, 1, 0, 0]
    references = [0, 2, 2, 1, 1, 0, 1]
    # class 0: tp 2, fp 1, fn 0 -> 4/5; class 1: tp 1, fp 1, fn 2 -> 2/5; class 2: tp 1, fp 1,
    # fn 1 -> 1/2; macro = (0.8 + 0.4 + 0.5) / 3; micro = accuracy = 4/7
    assert metrics.macro_f1(predictions, references) == pytest.approx(1.7 / 3)
    assert metrics.micro_f1(predictions, references) == pytest.approx(4 / 7)
    assert metrics.micro_f1(predictions, references) == metrics.accuracy(predictions, references)


def test_hub_task_reads_named_columns_and_checks_rows(monkeypatch):
    """format = "hub" (offline here: the Hub loader is replaced by a table of rows)."""
    tables = {
        "train": [{"text": "good", "label": 1}, {"text": "bad", "label": 0}],
        "test": [{"text": "fine", "label": 1}, {"text": "awful", "label": 4}],
    }
    calls = []

    def fake_load_hub(name, config, split):
        calls.append((name, config, split))
        return tables[split]

    monkeypatch.setattr("bertabl.tasks.custom.load_hub", fake_load_hub)
    hub = {
        "format": "hub",
        "hub_dataset": "yelp_review_full",
        "train": "train",
        "dev": "test",
        "text": "text",
        "label": "label",
        "labels": ["0", "1"],
    }
    plan = _plan({"yelp": hub})
    data = plan.finetune[0].config.task_data
    assert data.identity["splits"] == {"train": "train", "dev": "test"}
    assert load_split("yelp", "train", data)["label"] == [1, 0]
    assert calls == [("yelp_review_full", None, "train")]
    with pytest.raises(DataError, match=r"yelp_review_full \(test split\) row 1: label '4'"):
        load_split("yelp", "dev", data)
