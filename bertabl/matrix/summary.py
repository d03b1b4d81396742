"""A plan as data: every resolved trial config with its compute, for `bertabl plan --json` (and
for scripts that check a matrix before spending GPU hours)."""

from __future__ import annotations

from typing import Any

from bertabl.matrix.cells import trial_rows
from bertabl.matrix.compute import MFU, PAPER_BASE_FLOPS, PEAK_TFLOPS, gpu_hours
from bertabl.matrix.plan import Plan


def plan_summary(plan: Plan, mfu: float = MFU, peak_tflops: float = PEAK_TFLOPS) -> dict[str, Any]:
    """The plan's trials (resolved configs, dependencies, parameters, tokens, FLOPs), its
    checkpoints, warnings and totals with the GPU-hours they take at `mfu` of `peak_tflops`."""

    def hours(flops: float) -> float:
        return gpu_hours(flops, mfu, peak_tflops)

    def rows_of(model_id: str) -> list[str]:
        return list(dict.fromkeys(r.name for r in plan.rows if r.pretrain_id == model_id))

    pretrain = [
        {
            "id": t.id,
            "rows": rows_of(t.id),
            "config": t.config.model_dump(mode="json"),
            "parameters": t.parameters,
            "tokens": t.tokens,
            "flops": t.flops,
            "gpu_hours": hours(t.flops),
        }
        for t in plan.pretrain
    ]
    finetune_rows = trial_rows(plan)
    finetune = [
        {
            "id": t.id,
            "rows": finetune_rows.get(t.id, []),
            "depends_on": t.pretrain_id,
            "task": t.task,
            "grid_point": dict(t.grid_point),
            "restart": t.restart,
            "config": t.config.model_dump(mode="json"),
            "tokens": t.tokens,
            "flops": t.flops,
            "gpu_hours": hours(t.flops),
        }
        for t in plan.finetune
    ]
    checkpoints = [
        {
            "id": c.id,
            "rows": rows_of(c.id),
            "from": c.spec,
            "identity": c.checkpoint.identity,
            "model_type": c.model_type,
            "parameters": c.parameters,
        }
        for c in plan.checkpoints
    ]
    pt_flops = sum(t.flops for t in plan.pretrain)
    ft_flops = sum(t.flops for t in plan.finetune)
    matrix = plan.matrix
    return {
        "matrix": matrix.name,
        "scale": matrix.scale,
        "warnings": plan.warnings,
        "rows": [
            {"name": r.name, "label": r.label, "model": r.pretrain_id, "settings": dict(r.settings)}
            for r in plan.rows
        ],
        "pretrain": pretrain,
        "checkpoints": checkpoints,
        "finetune": finetune,
        "totals": {
            "pretrain_flops": pt_flops,
            "finetune_flops": ft_flops,
            "flops": pt_flops + ft_flops,
            "fraction_of_bert_base_pretraining": (pt_flops + ft_flops) / PAPER_BASE_FLOPS,
            "gpu_hours": hours(pt_flops + ft_flops),
            "assumed": {"mfu": mfu, "peak_tflops": peak_tflops},
        },
    }
