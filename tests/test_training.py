"""Shared training pieces: precision policy, gradient step order, non-finite losses, per-rank RNG
state."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

from bertabl.errors import UserError
from bertabl.training import (
    Precision,
    adamw_with_schedule,
    apply_gradients,
    bert_parameter_groups,
)

CPU = torch.device("cpu")


def test_auto_precision_is_fp32_on_cpu_and_fp16_needs_a_gpu():
    auto = Precision.for_device(CPU, "auto")
    assert auto.dtype is None and auto.scaler is None and auto.state_dict() == {}
    assert Precision.for_device(CPU, "bf16").dtype == torch.bfloat16
    with pytest.raises(UserError, match="fp16' needs a GPU"):
        Precision.for_device(CPU, "fp16")


def test_bf16_autocast_runs_a_training_step_on_cpu():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer, scheduler = adamw_with_schedule(bert_parameter_groups(model, 0.0), 1e-2, 10, 0.0)
    precision = Precision.for_device(CPU, "bf16")
    before = model.weight.detach().clone()
    with precision.autocast():
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    _step(out.float().pow(2).mean(), model, optimizer, scheduler, precision)
    assert not torch.equal(before, model.weight)


def _step(loss, model, optimizer, scheduler, precision) -> None:
    """A training step as the trial bodies take it: backward, then apply the gradients."""
    precision.backward(loss)
    apply_gradients(loss.item(), model, optimizer, scheduler, "test", precision)


class RecordingScaler:
    """Stands in for torch.amp.GradScaler (CUDA-only here) to check the order of calls."""

    def __init__(self):
        self.calls = []

    def scale(self, loss):
        self.calls.append("scale")
        return loss * 1.0

    def unscale_(self, optimizer):
        self.calls.append("unscale")

    def step(self, optimizer):
        self.calls.append("step")
        optimizer.step()

    def update(self):
        self.calls.append("update")

    def state_dict(self):
        return {"scale": 1024.0}


def test_fp16_step_unscales_before_clipping_and_checkpoints_the_scaler():
    model = torch.nn.Linear(4, 2)
    optimizer, scheduler = adamw_with_schedule(bert_parameter_groups(model, 0.0), 1e-2, 10, 0.0)
    scaler = RecordingScaler()
    precision = Precision(CPU, None, scaler)
    _step(model(torch.randn(3, 4)).sum(), model, optimizer, scheduler, precision)
    assert scaler.calls == ["scale", "unscale", "step", "update"]
    assert precision.state_dict() == {"scale": 1024.0}


def test_non_finite_loss_fails_with_where_it_happened():
    model = torch.nn.Linear(2, 1)
    optimizer, scheduler = adamw_with_schedule(bert_parameter_groups(model, 0.0), 1e-2, 10, 0.0)
    with pytest.raises(FloatingPointError, match="loss became nan at step 7"):
        apply_gradients(float("nan"), model, optimizer, scheduler, "step 7", Precision(CPU))


# The fused AdamW that `adamw_with_schedule` builds takes the for-loop AdamW's steps.
def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))


def test_fused_adamw_matches_the_for_loop_form():
    fused_model, loop_model = _model(), _model()
    fused, fused_schedule = adamw_with_schedule(
        bert_parameter_groups(fused_model, 0.01), 1e-2, 10, 0.2
    )
    assert fused.defaults["fused"]
    # The reference: BERT's groups (decay on weight matrices only) in the for-loop AdamW.
    params = list(loop_model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    loop = torch.optim.AdamW(groups, lr=1e-2, eps=1e-6, foreach=False, fused=False)
    loop_schedule = torch.optim.lr_scheduler.LambdaLR(loop, fused_schedule.lr_lambdas[0])
    data = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        for model, optimizer, schedule in (
            (fused_model, fused, fused_schedule),
            (loop_model, loop, loop_schedule),
        ):
            model(data).square().mean().backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    start = _model().parameters()
    moved = [not torch.equal(a, b) for a, b in zip(fused_model.parameters(), start, strict=True)]
    assert all(moved)  # the comparison is over real updates


# --- a GPU host, simulated: what the trial code asks torch.cuda and does with the answers ------


def test_a_trial_holding_a_gpu_fails_when_torch_cannot_use_cuda(monkeypatch):
    from bertabl.training import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(0) == CPU
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(UserError, match=r"gpus_per_trial = 0.5 but this torch .* CPU-only build"):
        pick_device(0.5)
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    with pytest.raises(UserError, match=r"finds no usable GPU: no NVIDIA driver, one older than"):
        pick_device(1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(1) == torch.device("cuda")


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_precision_on_a_gpu_wants_native_bf16(monkeypatch, tf32_flags, native, expected):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    torch.backends.cuda.matmul.allow_tf32 = False
    with warnings.catch_warnings():  # without CUDA, GradScaler("cuda") warns and disables itself
        warnings.simplefilter("ignore")
        precision = Precision.for_device(torch.device("cuda"), "auto")
    assert asked == [False]  # emulated bf16 (pre-Ampere) is slower than fp16 with a scaler
    assert precision.dtype == expected and (precision.scaler is not None) == (not native)
    assert torch.backends.cuda.matmul.allow_tf32  # fp32 matmuls on the GPU use TF32
    torch.backends.cuda.matmul.allow_tf32 = False
    Precision.for_device(CPU, "fp32")
    assert not torch.backends.cuda.matmul.allow_tf32  # a CPU trial leaves the flags alone


class FakeCuda:
    """torch.cuda's RNG functions on a host with `count` GPUs; like torch, an index past the
    count is an error."""

    def __init__(self, monkeypatch, count: int, current: int = 0):
        self.count, self.current, self.states = count, current, {}
        for name in ("get_rng_state", "set_rng_state", "get_rng_state_all", "set_rng_state_all"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)

    def _index(self, device) -> int:
        device = torch.device(device)
        index = self.current if device.index is None else device.index
        if index >= self.count:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index} of {self.count}")
        return index

    def get_rng_state(self, device="cuda"):
        return self.states.get(self._index(device), torch.tensor([self._index(device)]))

    def set_rng_state(self, state, device="cuda"):
        self.states[self._index(device)] = state

    def get_rng_state_all(self):
        raise AssertionError("a checkpoint must not hold every visible GPU's state")

    set_rng_state_all = get_rng_state_all


def test_rng_state_is_the_own_gpus_and_resumes_on_a_host_with_fewer(monkeypatch):
    from bertabl.training import rng_state, set_rng_state

    assert "cuda" not in rng_state(CPU) and "cuda" not in rng_state()
    FakeCuda(monkeypatch, count=4)
    saved = rng_state(torch.device("cuda", 3))  # rank 3 of a 4-GPU trial
    assert saved["cuda"].tolist() == [3]
    resumed = FakeCuda(monkeypatch, count=1)  # the same rank resumed where one GPU is visible
    set_rng_state(saved, torch.device("cuda"))
    assert resumed.states == {0: saved["cuda"]}
    set_rng_state(saved, CPU)  # a GPU checkpoint resumed on CPU: the CPU generators only
    assert resumed.states == {0: saved["cuda"]}


def test_ranks_restore_their_own_gpu_state(monkeypatch):
    from bertabl.training import restore_rank_rng, rng_state

    host = FakeCuda(monkeypatch, count=2)
    rank_states = [rng_state(torch.device("cuda", r)) for r in range(2)]
    state = {"rng": rank_states[0], "worker_rng": rank_states[1:], "step": 4}
    host.count = 1  # resumed with one GPU visible per process
    main = SimpleNamespace(is_main=True, rank=0, world=2, device=torch.device("cuda", 0))
    restore_rank_rng(state, main, seed=0)
    assert host.states[0].tolist() == [0]
    other = SimpleNamespace(is_main=False, rank=1, world=2, device=torch.device("cuda", 0))
    restore_rank_rng(state, other, seed=0)
    assert host.states[0].tolist() == [1]  # rank 1's state, on the one GPU it now sees


def test_batches_go_to_a_gpu_through_pinned_memory_and_lengths_stay(monkeypatch):
    from bertabl.training import HOST_KEYS, to_device

    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "lengths": torch.tensor([3, 2])}
    assert to_device(batch, CPU) == batch and "lengths" in HOST_KEYS
    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: calls.append("pin") or t)
    monkeypatch.setattr(
        torch.Tensor, "to", lambda t, device, non_blocking=False: calls.append(non_blocking) or t
    )
    moved = to_device(batch, torch.device("cuda"))
    assert calls == ["pin", True]  # input_ids: pinned, then an asynchronous copy
    assert moved["lengths"] is batch["lengths"]  # never copied: packing reads them on the host


@pytest.fixture
def restore_determinism(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("NCCL_ALGO", raising=False)
    yield
    from bertabl.training import use_deterministic_algorithms

    use_deterministic_algorithms(False)


def test_deterministic_mode_sets_torch_cublas_cudnn_and_nccl(restore_determinism):
    import os

    from bertabl.training import use_deterministic_algorithms

    use_deterministic_algorithms(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert os.environ["NCCL_ALGO"] == "Ring"
    use_deterministic_algorithms(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_trials_sharing_a_gpu_are_capped_and_leave_no_cache(monkeypatch):
    from bertabl.training import release_gpu_memory, share_gpu

    calls = []
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append(("cap", f))
    )
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty"))
    gpu = torch.device("cuda")
    share_gpu(gpu, 0.25), share_gpu(gpu, 1.0), share_gpu(CPU, 0.5)
    release_gpu_memory(gpu), release_gpu_memory(CPU)
    assert calls == [("cap", 0.25), "empty"]
