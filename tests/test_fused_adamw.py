"""The fused AdamW that `adamw_with_schedule` builds takes the for-loop AdamW's steps."""

from __future__ import annotations

import torch

from bertabl.training import adamw_with_schedule


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))


def test_fused_adamw_matches_the_for_loop_form():
    fused_model, loop_model = _model(), _model()
    fused, fused_schedule = adamw_with_schedule(fused_model, 1e-2, 0.01, 10, 0.2)
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
