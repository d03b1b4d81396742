"""Gradient accumulation in pre-training: same results as one process with the whole batch,
exact resume, clear errors. Data-parallel trials (Ray Train workers on a simulated cluster)
are tested in tests/orchestrate/test_train_workers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertabl.errors import UserError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from bertabl.trial.layout import batch_layout
from tests.conftest import TINY_MATRIX, KillAfter, Killed

CPU = torch.device("cpu")
STEPS = 6
OBJECTIVES = {"mlm_nsp": 0, "mlm": 1}


@pytest.fixture(scope="module")
def plan():
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["steps"] = STEPS
    raw["pretrain"]["model"]["dropout"] = 0.0  # layouts then compute the same function
    return build_plan(validate(raw, "tiny.toml"))


def _run(config, out_dir: Path, **runtime) -> tuple[dict, list[dict], dict[str, torch.Tensor]]:
    reports: list[dict] = []
    metrics = pretrain(
        config,
        out_dir,
        TrialRuntime(CPU, report=lambda m: reports.append(dict(m)), **runtime),
    )
    return metrics, reports, load_file(out_dir / "model" / "model.safetensors")


def _max_weight_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _assert_close_metrics(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "mlm_perplexity":  # exp(mlm_loss): compare relatively
            assert a[key] == pytest.approx(b[key], rel=tol), key
        elif key != "seconds":
            assert a[key] == pytest.approx(b[key], abs=tol, rel=0), key


@pytest.mark.parametrize("micro", [4, 2])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_accumulation_matches_the_full_batch(plan, tmp_path: Path, objective: str, micro: int):
    config = plan.pretrain[OBJECTIVES[objective]].config
    assert config.pretrain.batch_size == 8
    full, _, full_weights = _run(config, tmp_path / "full", micro_batch_size=8)
    accumulated, _, weights = _run(config, tmp_path / "acc", micro_batch_size=micro)

    assert _max_weight_diff(full_weights, weights) < 1e-5
    _assert_close_metrics(full, accumulated, 1e-5)
    assert full["step"] == STEPS and "mlm_loss" in full


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_resume_with_accumulation_is_bit_identical(plan, tmp_path: Path, objective: str):
    config = plan.pretrain[OBJECTIVES[objective]].config
    straight, _, straight_weights = _run(config, tmp_path / "straight", micro_batch_size=2)

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Killed):
        _run(
            config,
            resumed_dir,
            micro_batch_size=2,
            checkpoints=KillAfter(resumed_dir / "ckpt", at_step=3),
            checkpoint_every=3,
        )
    runtime = TrialRuntime(
        CPU, checkpoints=Checkpointer(resumed_dir / "ckpt"), checkpoint_every=3, micro_batch_size=2
    )
    resumed = pretrain(config, resumed_dir, runtime)

    assert runtime.resumed_from == 3
    assert resumed == straight
    weights = load_file(resumed_dir / "model" / "model.safetensors")
    assert all(torch.equal(straight_weights[k], weights[k]) for k in weights)


def test_batch_layout_errors_name_the_keys(plan, tmp_path: Path):
    with pytest.raises(UserError, match=r"pretrain\.batch_size = 8 .*workers_per_trial = 3"):
        batch_layout(8, 3, 0)
    with pytest.raises(UserError, match=r"resources\.micro_batch_size = 3 .*8 / 1 = 8"):
        batch_layout(8, 1, 3)
    with pytest.raises(UserError, match=r"resources\.micro_batch_size = 8 .*8 / 2 = 4"):
        batch_layout(8, 2, 8)
    layout = batch_layout(8, 2, 0)
    assert (layout.per_worker, layout.micro_batch_size, layout.accumulation_steps) == (4, 4, 1)
    assert batch_layout(8, 2, 2).accumulation_steps == 2

    # pretrain() checks before it builds or starts anything
    config = plan.pretrain[0].config
    with pytest.raises(UserError, match="resources.micro_batch_size"):
        pretrain(config, tmp_path, TrialRuntime(CPU, micro_batch_size=3))
    assert not any(tmp_path.iterdir())


def test_micro_batches_cover_the_rank_slice():
    layout = batch_layout(8, 2, 2)
    rows = [[list(range(8))[part] for part in layout.rows(r)] for r in (0, 1)]
    assert rows == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
