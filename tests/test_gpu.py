"""On a CUDA GPU (pytest -m gpu; skipped where torch sees none; bench/gpu_check.sh runs them):
the trial bodies per precision, checkpoint/resume, and the GPU's RNG state.

Written without a GPU to run them on: they are the first thing to run where one is lent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from bertabl.finetune.epoch_loop import finetune
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime, rng_state, set_rng_state, use_deterministic_algorithms
from tests.conftest import TINY_MATRIX, KillAfter, Killed

pytestmark = pytest.mark.gpu
GPU = torch.device("cuda")


@pytest.fixture(scope="module")
def plan():
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["steps"] = 12
    raw["finetune"]["grid"]["epochs"] = [2]
    return build_plan(validate(raw, "tiny.toml"))


@pytest.fixture
def deterministic():
    yield
    use_deterministic_algorithms(False)  # the process-wide flags back to the default


class Recording(Checkpointer):
    """A checkpointer that also keeps every state it saved."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.states: list[dict] = []

    def save(self, step, state):
        self.states.append(state)
        return super().save(step, state)


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model" / "model.safetensors")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


AUTOCAST = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.mark.parametrize("precision", list(AUTOCAST))
def test_pretrain_and_finetune_on_the_gpu(plan, tmp_path: Path, precision: str):
    """Each precision end to end on the GPU: the model lives there, linear layers autocast to
    the precision's dtype, fp16 checkpoints its loss scaler, and the losses are finite."""
    dtypes: set[torch.dtype] = set()
    devices: set[str] = set()

    def spy(module, args, output):
        if isinstance(module, nn.Linear):
            dtypes.add(output.dtype)
            devices.add(output.device.type)

    handle = nn.modules.module.register_module_forward_hook(spy)
    try:
        checkpoints = Recording(tmp_path / "pt-ckpt")
        runtime = TrialRuntime(
            GPU, precision=precision, checkpoints=checkpoints, checkpoint_every=5
        )
        metrics = pretrain(plan.pretrain[0].config, tmp_path / "pt", runtime)
        trial = next(t for t in plan.finetune if t.pretrain_id == plan.pretrain[0].id)
        runtime = TrialRuntime(GPU, precision=precision)
        scores = finetune(trial.config, tmp_path / "pt" / "model", tmp_path / "ft", runtime)
    finally:
        handle.remove()
    assert devices == {"cuda"}
    assert AUTOCAST[precision] in dtypes
    assert torch.isfinite(torch.tensor([metrics["loss"], scores["train_loss"]])).all()
    assert 0.0 <= scores["dev_accuracy"] <= 1.0
    state = checkpoints.states[0]
    assert "cuda" in state["rng"]  # this GPU's generator, one state
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0  # the loss scale goes into every checkpoint
    else:
        assert state["scaler"] == {}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_deterministic_pretraining_resumes_bit_identically_on_the_gpu(
    plan, tmp_path: Path, precision: str, deterministic
):
    """resources.deterministic = true: killed at step 5 and resumed == never stopped, to the
    bit, on one GPU (dropout draws from the GPU's generator: its state must come back)."""
    config = plan.pretrain[0].config

    def runtime(checkpoints=None):
        return TrialRuntime(
            GPU,
            precision=precision,
            deterministic=True,
            checkpoints=checkpoints,
            checkpoint_every=5,
        )

    straight = pretrain(config, tmp_path / "straight", runtime())
    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Killed):
        pretrain(config, resumed_dir, runtime(KillAfter(resumed_dir / "ckpt", at_step=5)))
    again = runtime(Checkpointer(resumed_dir / "ckpt"))
    resumed = pretrain(config, resumed_dir, again)
    assert again.resumed_from == 5
    assert resumed == straight
    assert _same(_weights(tmp_path / "straight"), _weights(resumed_dir))


def test_deterministic_finetuning_resumes_bit_identically_on_the_gpu(
    plan, tmp_path: Path, deterministic
):
    pretrain(plan.pretrain[0].config, tmp_path / "pt", TrialRuntime(GPU))
    trial = next(t for t in plan.finetune if t.pretrain_id == plan.pretrain[0].id)
    model = tmp_path / "pt" / "model"
    straight = finetune(trial.config, model, tmp_path / "a", TrialRuntime(GPU, deterministic=True))
    ckpt = tmp_path / "b" / "ckpt"
    with pytest.raises(Killed):
        killed = TrialRuntime(
            GPU, deterministic=True, checkpoints=KillAfter(ckpt, at_step=3), checkpoint_every=3
        )
        finetune(trial.config, model, tmp_path / "b", killed)
    runtime = TrialRuntime(
        GPU, deterministic=True, checkpoints=Checkpointer(ckpt), checkpoint_every=3
    )
    assert finetune(trial.config, model, tmp_path / "b", runtime) == straight
    assert runtime.resumed_from == 3


def test_the_gpus_rng_state_is_saved_and_restored():
    torch.manual_seed(0)
    state = rng_state(GPU)
    first = torch.rand(4, device=GPU)
    torch.rand(100, device=GPU)  # the generator moves on
    set_rng_state(state, GPU)
    assert torch.equal(torch.rand(4, device=GPU), first)
    assert state["cuda"].device.type == "cpu"  # a byte tensor: any host can load it


def test_chunked_ltr_loss_on_the_gpu_matches_dense(tmp_path: Path, monkeypatch):
    """The checkpointed chunks under bf16 autocast on the GPU: the same losses as dense."""
    import bertabl.pretrain.model as model_module

    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = [{"name": "ltr", "pretrain": {"objective": "ltr"}}]
    config = build_plan(validate(raw, "m.toml"), "m.toml").pretrain[0].config
    dense = pretrain(config, tmp_path / "dense", TrialRuntime(GPU, precision="bf16"))
    vocab = len(_weights(tmp_path / "dense")["cls.predictions.bias"])
    monkeypatch.setattr(model_module, "DENSE_LOGITS_LIMIT", 50 * vocab)  # chunks of 50 positions
    chunked = pretrain(config, tmp_path / "chunked", TrialRuntime(GPU, precision="bf16"))
    assert chunked["loss"] == pytest.approx(dense["loss"], rel=2e-2)
    assert chunked["heldout_loss"] == pytest.approx(dense["heldout_loss"], rel=2e-2)
