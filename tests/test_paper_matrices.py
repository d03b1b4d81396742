"""The paper-table matrices at `--scale tiny`: their pre-training runs through the real Ray stage
on ../shared/data's corpus, every trial's loss falls, and each reports held-out perplexity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertabl.cli import app
from tests.conftest import REPO, SHARED_DATA

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present"),
]


@pytest.mark.parametrize("name,trials", [("table5", 3), ("table8", 6)])
def test_tiny_pretraining_on_the_shared_corpus(name, trials, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(REPO)  # the matrices' data paths are relative to the repository
    run_dir = tmp_path / name
    args = ["run", f"matrices/{name}.toml", "--scale", "tiny", "--stage", "pretrain"]
    # fewer steps than the tiny preset's 500 (CI time); the model and data are the tiny scale's
    args += ["--run-dir", str(run_dir), "--set", "pretrain.steps=60"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("pt-*/record.json")]
    assert len(records) == trials and all(r["status"] == "done" for r in records)
    for record in records:
        key = "ltr_loss" if record["config"]["pretrain"]["objective"] == "ltr" else "mlm_loss"
        losses = [entry[key] for entry in record["history"]]
        assert len(losses) == 3  # logged at steps 25, 50, 60
        assert losses[-1] < losses[0] - 0.5, losses
        assert record["metrics"]["heldout_perplexity"] < 4000  # the 4,000-token vocabulary
    # the corpus was tokenised once, by the data preparation, into one token store shared by
    # every trial (one trained vocabulary)
    assert len(list((run_dir / "cache").glob("tokens-*/meta.json"))) == 1
    assert len(list((run_dir / "cache").glob("tokenizer-*"))) == 1
