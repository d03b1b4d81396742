"""Scale presets: defaults a matrix inherits for every key it does not set itself.

The same matrix runs at another scale with `--scale`; single keys change with `--set`.
Precedence (lowest to highest): preset < matrix file < --set overrides.
"""

from __future__ import annotations

from typing import Any

# `tiny`: minutes on a 2-core CPU. A 2-layer, 64-wide BERT learns the synthetic language in a few
# hundred steps; learning rates are higher than the paper's because the model is ~1000x smaller,
# and dropout is off because a model this small, trained this briefly, underfits rather than
# overfits.
TINY: dict[str, Any] = {
    "pretrain": {
        "objective": "mlm_nsp",
        "model": {"layers": 2, "hidden": 64, "heads": 2, "max_position": 128, "dropout": 0.0},
        "steps": 500,
        "batch_size": 32,
        "max_seq_len": 64,
        "learning_rate": 3e-3,
        "warmup_fraction": 0.1,
    },
    "finetune": {
        "grid": {"batch_size": [32], "learning_rate": [3e-4, 1e-3], "epochs": [4]},
        "restarts": 2,
        "max_seq_len": 64,
    },
}

PRESETS: dict[str, dict[str, Any]] = {"tiny": TINY}


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `top` over `base`, merging nested tables key by key (lists are replaced)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
