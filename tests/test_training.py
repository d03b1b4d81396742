"""Shared training pieces: precision policy, gradient step order, non-finite losses."""

from __future__ import annotations

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


def test_length_grouped_order_sorts_within_mega_batches_only():
    from bertabl.finetune.train import MEGA_BATCH, length_grouped

    batch = 2
    n = MEGA_BATCH * batch + 3  # one full group of 100 examples and 3 left over
    lengths = [(i * 37) % 11 for i in range(n)]
    order = list(reversed(range(n)))
    grouped = length_grouped(order, lengths, batch)
    assert sorted(grouped) == list(range(n))  # a permutation: nothing lost or repeated
    first, rest = grouped[: MEGA_BATCH * batch], grouped[MEGA_BATCH * batch :]
    assert set(first) == set(order[: MEGA_BATCH * batch])  # groups keep their members
    assert [lengths[i] for i in first] == sorted((lengths[i] for i in first), reverse=True)
    assert [lengths[i] for i in rest] == sorted((lengths[i] for i in rest), reverse=True)


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
