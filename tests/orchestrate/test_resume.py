"""Checkpoints and exact resume of the trial bodies (no Ray): interrupted + resumed == straight."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertabl.finetune.epoch_loop import finetune
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from tests.conftest import TINY_MATRIX, KillAfter, Killed

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def plan():
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["steps"] = 12
    raw["finetune"]["grid"]["epochs"] = [2]
    return build_plan(validate(raw, "tiny.toml"))


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model" / "model.safetensors")


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("objective_index", [0, 1], ids=["mlm_nsp", "mlm"])
def test_pretraining_resumes_bit_identically(plan, tmp_path: Path, objective_index: int):
    config = plan.pretrain[objective_index].config
    straight = pretrain(config, tmp_path / "straight", TrialRuntime(CPU))

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Killed):
        pretrain(
            config,
            resumed_dir,
            TrialRuntime(
                CPU, checkpoints=KillAfter(resumed_dir / "ckpt", at_step=5), checkpoint_every=5
            ),
        )
    runtime = TrialRuntime(CPU, checkpoints=Checkpointer(resumed_dir / "ckpt"), checkpoint_every=5)
    resumed = pretrain(config, resumed_dir, runtime)

    assert runtime.resumed_from == 5
    assert resumed == straight
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(resumed_dir))


def test_finetuning_resumes_bit_identically_mid_epoch_and_at_epoch_end(plan, tmp_path: Path):
    pretrained = tmp_path / "pt"
    pretrain(plan.pretrain[0].config, pretrained, TrialRuntime(CPU))
    config = plan.finetune[0].config  # 64 train examples / batch 16 = 4 steps per epoch
    straight = finetune(config, pretrained / "model", tmp_path / "a", TrialRuntime(CPU))

    for kill_at in (2, 4):  # mid-epoch 1, and the end-of-epoch-1 checkpoint
        directory = tmp_path / f"kill{kill_at}"
        with pytest.raises(Killed):
            finetune(
                config,
                pretrained / "model",
                directory,
                TrialRuntime(
                    CPU, checkpoints=KillAfter(directory, at_step=kill_at), checkpoint_every=2
                ),
            )
        runtime = TrialRuntime(CPU, checkpoints=Checkpointer(directory), checkpoint_every=2)
        resumed = finetune(config, pretrained / "model", directory, runtime)
        assert runtime.resumed_from == kill_at
        assert resumed == straight


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path: Path):
    store = Checkpointer(tmp_path, keep=3)
    for step in (1, 2, 3):
        store.save(step, {"step": step, "weights": torch.full((4,), float(step))})
    latest = store.paths()[-1]
    latest.write_bytes(latest.read_bytes()[:-10])  # truncated, as by a kill mid-write
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        state = store.load_latest()
    assert state["step"] == 2 and torch.equal(state["weights"], torch.full((4,), 2.0))


def test_keeps_only_the_newest_checkpoints(tmp_path: Path):
    store = Checkpointer(tmp_path, keep=2)
    for step in range(1, 6):
        store.save(step, {"step": step})
    assert [p.name for p in store.paths()] == ["ckpt-000000004.pt", "ckpt-000000005.pt"]
    assert store.load_latest()["step"] == 5
    store.clear()
    assert store.paths() == [] and store.load_latest() is None
