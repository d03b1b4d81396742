"""Shared test helpers: tiny matrices and the optional ../shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.orchestrate.record import Record
from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.trial.pretrain import ModelConfig

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"


def fixture_copies(folder: Path, fixture: str, names: tuple[str, ...]) -> Path:
    """`folder` (created) holding tests/fixtures/formats/`fixture` under each of `names`: one
    small file in a task's original format standing in for every split it reads."""
    folder.mkdir(exist_ok=True)
    text = (FIXTURES / "formats" / fixture).read_text()
    for name in names:
        (folder / name).write_text(text)
    return folder


# A matrix small enough to pre-train and fine-tune in seconds: 2 variants x 2 tasks x 1 grid
# point x 2 restarts = 2 pre-training + 8 fine-tuning trials.
TINY_MATRIX = """
name = "tiny"
description = "end-to-end test matrix"

[data.synthetic]
documents = 40
sentences_per_document = 6
train_examples = 64
dev_examples = 32

[pretrain]
steps = 10
batch_size = 8
max_seq_len = 32
learning_rate = 1e-3

[pretrain.model]
layers = 1
hidden = 32
heads = 2
max_position = 64

[[pretrain.variants]]
name = "bert_base"
label = "MLM + NSP"
pretrain = { objective = "mlm_nsp" }

[[pretrain.variants]]
name = "no_nsp"
label = "MLM only"
pretrain = { objective = "mlm" }

[finetune]
tasks = ["syn_agree", "syn_chain"]
restarts = 2
max_seq_len = 32

[finetune.grid]
batch_size = [16]
learning_rate = [1e-3]
epochs = [1]
"""


def run_results(run_dir: Path) -> dict[str, dict]:
    """Each trial's status, metrics, history (less its clock) and final weights: what a resumed
    run must reproduce to the bit on CPU."""
    import json

    from safetensors.torch import load_file

    out = {}
    for path in (run_dir / "trials").glob("*/record.json"):
        record = json.loads(path.read_text())
        out[record["id"]] = {
            "status": record["status"],
            "metrics": record["metrics"],
            "history": [{k: v for k, v in h.items() if k != "seconds"} for h in record["history"]],
        }
        model = path.parent / "model" / "model.safetensors"
        if model.is_file():
            out[record["id"]]["weights"] = {k: v.tolist() for k, v in load_file(model).items()}
    return out


def make_record(trial_id: str, status: str = "done", **fields) -> Record:
    """A trial's record as the run store reads it; tests give only the fields they check."""
    fields.setdefault("stage", "finetune")
    fields.setdefault("config", {})
    return Record(id=trial_id, status=status, **fields)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip where torch sees no CUDA device (this project's CI machines)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_matrix(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_MATRIX)
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


class Killed(Exception):
    """Stands in for SIGKILL: the trial body stops right after writing a checkpoint."""


class KillAfter(Checkpointer):
    """A checkpointer that 'kills' the body once it has saved the checkpoint of `at_step`."""

    def __init__(self, directory: Path, at_step: int):
        super().__init__(directory)
        self.at_step = at_step

    def save(self, step, state):
        path = super().save(step, state)
        if step == self.at_step:
            raise Killed(step)
        return path


def model_from(config: dict, vocab_size: int, pad_token_id: int):
    """A fresh pre-training model from {"objective", "model": {...}} (a tiny test model)."""
    model = ModelConfig.model_validate(config["model"])
    return OBJECTIVES[config["objective"]].build_model(model, vocab_size, pad_token_id)
