"""Test splits end to end: scored after selection for the selected grid point only, the saved
predictions re-score to the recorded numbers with the reference implementations (scikit-learn,
scipy, seqeval), GLUE submission files, and an exported model that reproduces its dev score."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import f1_score as seqeval_f1
from sklearn.metrics import accuracy_score, f1_score
from typer.testing import CliRunner

from bertabl.cli import app
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow
TESTS = FIXTURES / "formats" / "test_splits"


def _data(shared: Path, root: Path) -> tuple[Path, Path]:
    """GLUE and CoNLL folders: the real train/dev files, plus test files in original formats."""
    glue = root / "glue"
    for task in ("SST-2", "MRPC", "STS-B"):
        (glue / task).mkdir(parents=True)
        for split in ("train.tsv", "dev.tsv"):
            (glue / task / split).symlink_to(shared / "glue" / task / split)
    shutil.copy(TESTS / "sst2-test.tsv", glue / "SST-2" / "test.tsv")  # GLUE's, unlabeled
    shutil.copy(TESTS / "msr_paraphrase_test.txt", glue / "MRPC")  # MSR's labeled test
    shutil.copy(TESTS / "sts-test.csv", glue / "STS-B")  # the STS Benchmark's labeled test
    conll = root / "conll"
    conll.mkdir()
    for name in ("eng.train", "eng.testa"):
        (conll / name).symlink_to(shared / "conll2003" / name)
    shutil.copy(TESTS / "eng.testb", conll)
    return glue, conll


MATRIX = """
name = "splits"
[data]
corpus = "{shared}/corpus/gutenberg"
corpus_format = "paragraphs"
tokenizer = "{shared}/vocab/bert-base-uncased-vocab.txt"
glue_dir = "{glue}"
conll_dir = "{conll}"
[data.tasks.sst2]
max_train_examples = 48
max_dev_examples = 24
[data.tasks.mrpc]
max_train_examples = 48
max_dev_examples = 24
[data.tasks.stsb]
max_train_examples = 48
max_dev_examples = 24
[data.tasks.conll2003]
max_train_examples = 48
max_dev_examples = 24
[pretrain]
steps = 3
batch_size = 8
max_seq_len = 32
[pretrain.model]
layers = 1
hidden = 32
heads = 2
max_position = 64
[finetune]
tasks = ["sst2", "mrpc", "stsb", "conll2003"]
restarts = 2
max_seq_len = 32
[finetune.grid]
batch_size = [16]
learning_rate = [1e-3, 3e-3]
epochs = [1]
"""


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_test_splits_predictions_submission_and_export(shared_data: Path, tmp_path: Path):
    glue, conll = _data(shared_data, tmp_path)
    matrix = tmp_path / "splits.toml"
    matrix.write_text(MATRIX.format(shared=shared_data, glue=glue, conll=conll))
    run_dir = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(matrix), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    records = {
        p.parent.name: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*/record.json")
    }
    tests = [r for r in records.values() if r["stage"] == "test"]
    assert len(tests) == 4 and all(r["status"] == "done" for r in tests)  # one scoring per cell
    for test in tests:
        selected = test["metrics"]["trials"]
        point = test["metrics"]["grid_point"]
        cell = test["config"]["trials"]
        assert len(selected) == 2  # the selected grid point's two restarts, no others
        for trial_id in cell:
            record, folder = records[trial_id], run_dir / "trials" / trial_id
            dev = _lines(folder / "predictions" / "dev.jsonl")
            _check(record["config"]["task"], dev, record["metrics"], "dev")
            if trial_id in selected:
                assert record["config"]["learning_rate"] == point["learning_rate"]
                assert (folder / "final").is_dir()  # kept for export
                for split in test["config"]["splits"]:
                    lines = _lines(folder / "predictions" / f"{split}.jsonl")
                    if split == "test":
                        _check(record["config"]["task"], lines, record["metrics"], "test")
                    else:  # GLUE's unlabeled test set: predictions only, no score
                        assert "label" not in lines[0] and len(lines) == 4
            else:
                assert not (folder / "final").exists()  # pruned: selection passed it over
                assert not any(k.startswith("test_") for k in record["metrics"])
    report = (run_dir / "splits.md").read_text()
    assert "mrpc test (f1)" in report and "conll2003 test (f1)" in report

    written = runner.invoke(app, ["report", str(run_dir), "--glue-submission"])
    assert written.exit_code == 0, written.output
    submission = (run_dir / "splits.glue" / "base" / "SST-2.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and [s.split("\t")[0] for s in submission[1:]] == [
        "0",
        "1",
        "2",
        "3",
    ]
    assert {s.split("\t")[1] for s in submission[1:]} <= {"0", "1"}

    out = tmp_path / "sst2-model"
    exported = runner.invoke(
        app, ["export", str(run_dir), str(out), "--row", "base", "--task", "sst2"]
    )
    assert exported.exit_code == 0, exported.output
    _reproduces_dev(out, records, run_dir)


def _check(task: str, lines: list[dict], metrics: dict, split: str) -> None:
    """The recorded metrics equal the reference implementations on the saved predictions."""
    if task == "stsb":
        pred, gold = [x["prediction"] for x in lines], [x["label"] for x in lines]
        assert metrics[f"{split}_pearson"] == pytest.approx(pearsonr(pred, gold)[0], abs=1e-9)
        assert metrics[f"{split}_spearman"] == pytest.approx(spearmanr(pred, gold)[0], abs=1e-9)
    elif task == "conll2003":
        f1 = seqeval_f1([x["gold"] for x in lines], [x["tags"] for x in lines])
        assert metrics[f"{split}_f1"] == pytest.approx(f1, abs=1e-9)
    else:
        pred, gold = [x["prediction"] for x in lines], [x["label"] for x in lines]
        assert metrics[f"{split}_accuracy"] == pytest.approx(accuracy_score(gold, pred))
        if task == "mrpc":
            assert metrics[f"{split}_f1"] == pytest.approx(f1_score(gold, pred, pos_label="1"))


def _reproduces_dev(folder: Path, records: dict, run_dir: Path) -> None:
    """The exported folder loads with AutoModelForSequenceClassification and gives the best
    restart's dev predictions, so its dev score, exactly."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    about = json.loads((folder / "bertabl_export.json").read_text())
    record = records[about["trial"]]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dev = _lines(run_dir / "trials" / about["trial"] / "predictions" / "dev.jsonl")
    from bertabl.tasks.catalogue import spec_of
    from bertabl.tasks.sources import load_split
    from bertabl.trial.finetune import FinetuneTrialConfig

    config = FinetuneTrialConfig.model_validate(record["config"])
    rows = load_split(spec_of("sst2", config.task_data), "dev", config.task_data)
    predicted = []
    with torch.no_grad():
        for text in rows["text_a"]:  # one at a time: no padding can differ from the trial's
            inputs = tokenizer(
                text, truncation=True, max_length=config.max_seq_len, return_tensors="pt"
            )
            predicted.append(model.config.id2label[int(model(**inputs).logits.argmax(-1))])
    assert predicted == [x["prediction"] for x in dev]
    accuracy = accuracy_score([x["label"] for x in dev], predicted)
    assert accuracy == record["metrics"]["dev_accuracy"] == about["dev_accuracy"]
