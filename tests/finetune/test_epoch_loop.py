"""The fine-tuning loop: the order of each epoch, what each epoch reports and keeps, an exact
resume from a checkpoint taken mid-epoch, and the predictions files it writes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bertabl.finetune.epoch_loop import epoch_order, train_epochs, write_predictions
from bertabl.finetune.families.base import Scored
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.training import TrialRuntime
from tests.conftest import TINY_MATRIX, KillAfter, Killed

CPU = torch.device("cpu")
EPOCHS, BATCH, SIZE = 3, 4, 12  # 3 steps an epoch, 9 in all


class Regressor(torch.nn.Module):
    """y = w . x + b, squared error; remembers every batch loss it computed."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(2, 1)
        self.losses: list[float] = []

    def forward(self, x, labels):
        loss = ((self.head(x).squeeze(-1) - labels) ** 2).mean()
        self.losses.append(loss.item())
        return SimpleNamespace(loss=loss)


def _config():
    config = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml")).finetune[0].config
    return config.model_copy(update={"epochs": EPOCHS, "batch_size": BATCH})


def _data():
    x = torch.linspace(-1, 1, SIZE * 2).reshape(SIZE, 2)
    return [(x[i], 3 * x[i, 0] - x[i, 1] + 0.5) for i in range(SIZE)]


def _train(model: Regressor, runtime: TrialRuntime, calls: list[str]) -> dict:
    data = _data()

    def epoch_steps(epoch: int):
        order = epoch_order(SIZE, BATCH, torch.Generator().manual_seed(epoch))
        return lambda i: ("", [data[j] for j in order[i * BATCH : (i + 1) * BATCH]], None)

    def collate(items):
        return {
            "x": torch.stack([x for x, _ in items]),
            "labels": torch.stack([y for _, y in items]),
        }

    def evaluate(precision) -> dict:
        calls.append("evaluate")
        with torch.no_grad():
            x = torch.stack([x for x, _ in data])
            y = torch.stack([y for _, y in data])
            return {"dev_mse": ((model.head(x).squeeze(-1) - y) ** 2).mean().item()}

    return train_epochs(
        _config(), model, runtime, SIZE // BATCH, epoch_steps, lambda task: collate, evaluate,
        finish=lambda: calls.append("finish"),
    )  # fmt: skip


def test_each_epoch_reports_its_mean_loss_and_dev_scores_and_the_last_keeps_the_model():
    model, calls, reports = Regressor(), [], []
    runtime = TrialRuntime(CPU, report=reports.append)
    metrics = _train(model, runtime, calls)
    assert calls == ["evaluate", "evaluate", "evaluate", "finish"]  # finish after the last one
    assert [h["epoch"] for h in runtime.history] == [1, 2, 3]
    for epoch, entry in enumerate(runtime.history):
        step_losses = model.losses[epoch * 3 : epoch * 3 + 3]  # the 3 batches of that epoch
        assert entry["train_loss"] == pytest.approx(sum(step_losses) / 3, rel=1e-12)
    assert metrics == runtime.history[-1]
    assert runtime.history[-1]["dev_mse"] < runtime.history[0]["dev_mse"]  # it learns
    assert [r["epoch"] for r in reports] == [1, 2, 3] and all("seconds" in r for r in reports)


def test_a_run_killed_mid_epoch_resumes_to_the_same_result(tmp_path: Path):
    straight_model = Regressor()
    straight = TrialRuntime(CPU)
    expected = _train(straight_model, straight, [])

    killed = TrialRuntime(CPU, checkpoints=KillAfter(tmp_path, at_step=5), checkpoint_every=5)
    with pytest.raises(Killed):  # after step 5 of 9: epoch 2's second batch
        _train(Regressor(), killed, [])
    model, calls = Regressor(), []
    resumed = TrialRuntime(CPU, checkpoints=Checkpointer(tmp_path), checkpoint_every=5)
    assert _train(model, resumed, calls) == expected
    assert resumed.resumed_from == 5 and resumed.history == straight.history
    assert calls == ["evaluate", "evaluate", "finish"]  # epochs 2 and 3 only
    assert len(model.losses) == 4  # steps 6-9
    for ours, theirs in zip(model.parameters(), straight_model.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_predictions_are_one_json_line_an_example_in_file_order(tmp_path: Path):
    lines = [{"index": 0, "prediction": "pos", "label": "neg"}, {"index": 1, "prediction": 0.5}]
    write_predictions(tmp_path, {"dev": Scored({"accuracy": 0.5}, lines), "test": Scored({}, [])})
    assert (tmp_path / "dev.jsonl").read_text() == (
        '{"index": 0, "prediction": "pos", "label": "neg"}\n{"index": 1, "prediction": 0.5}\n'
    )
    assert [json.loads(line) for line in (tmp_path / "dev.jsonl").open()] == lines
    assert (tmp_path / "test.jsonl").read_text() == ""
    with pytest.raises(ValueError):  # NaN is not JSON: the official scripts could not read it
        write_predictions(tmp_path, {"dev": Scored({}, [{"index": 0, "prediction": float("nan")}])})


@pytest.mark.parametrize("size", [7, 150, 1515, 8000])  # 1 group, 1 of 4, 11 of 4+, 50 of 5
def test_epoch_order_takes_the_length_grouped_samplers_batches_in_random_order(size: int):
    # The batches of transformers' LengthGroupedSampler with the same generator, each whole...
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from bertabl.finetune.epoch_loop import epoch_order

    lengths = [(i * 37) % 53 + 3 for i in range(size)]
    hf = list(LengthGroupedSampler(32, lengths=lengths, generator=torch.Generator().manual_seed(5)))
    ours = epoch_order(size, 32, torch.Generator().manual_seed(5), lengths)
    assert sorted(ours) == list(range(size))
    batches = [ours[i : i + 32] for i in range(0, size, 32)]
    hf_batches = [hf[i : i + 32] for i in range(0, size, 32)]
    assert sorted(map(sorted, batches)) == sorted(map(sorted, hf_batches))
    # ...the longest first and the short one last, as the sampler has them...
    assert batches[0] == hf_batches[0] and lengths[ours[0]] == max(lengths)
    if size % 32:
        assert batches[-1] == hf_batches[-1] and len(batches[-1]) == size % 32
    # ...but not longest to shortest within each group (a length curriculum every 50 batches,
    # which cost STS-B up to 40 points of Pearson): with 4+ groups, the batches' maximum
    # lengths are out of the sampler's (descending) order.
    if size >= 1000:
        assert batches != hf_batches
        tops = [max(lengths[i] for i in b) for b in batches[1:-1]]
        assert sum(a < b for a, b in itertools.pairwise(tops)) > len(tops) // 4
    # Seeded: the same generator state, the same order.
    assert epoch_order(size, 32, torch.Generator().manual_seed(5), lengths) == ours
    plain = epoch_order(size, 32, torch.Generator().manual_seed(5))
    assert plain == torch.randperm(size, generator=torch.Generator().manual_seed(5)).tolist()
