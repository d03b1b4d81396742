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

# `paper`: the BERT paper's BERT-Base recipe (Sec. 3.1, App. A.2/A.3; ../shared/PAPER.md): 1M
# steps of 256 sequences, 90% of them at length 128 and the last 10% at 512, Adam lr 1e-4 with
# 10k warmup steps (1%) and linear decay, L2 weight decay 0.01, dropout 0.1, 15% masking
# 80/10/10; GLUE fine-tuning at batch 32 for 3 epochs, the best of lr {5e-5, 4e-5, 3e-5, 2e-5}
# on dev, 5 restarts (Tables 6 and 7 average 5 restarts). Weeks on one GPU: meant for clusters.
PAPER: dict[str, Any] = {
    "pretrain": {
        "objective": "mlm_nsp",
        "model": {"layers": 12, "hidden": 768, "heads": 12, "max_position": 512, "dropout": 0.1},
        "steps": 1_000_000,
        "batch_size": 256,
        "max_seq_len": 512,
        "seq_len_schedule": [{"seq_len": 128, "fraction": 0.9}, {"seq_len": 512, "fraction": 0.1}],
        "learning_rate": 1e-4,
        "warmup_fraction": 0.01,
        "weight_decay": 0.01,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
    },
    "finetune": {
        "grid": {"batch_size": [32], "learning_rate": [5e-5, 4e-5, 3e-5, 2e-5], "epochs": [3]},
        "restarts": 5,
        "max_seq_len": 128,
    },
    "resources": {"gpus_per_trial": 1.0, "cpus_per_trial": 4.0},
    "checkpointing": {"every_steps": 5000},
}

# `budget`: hours on one GPU. A 4-layer, 512-wide BERT (the "BERT-Small" shape of Google's compact
# BERT release) for 100k steps of 256 x 128 tokens: about 3.3B tokens, ~1/40 of the paper's
# compute per model (bertabl plan prints the FLOPs). Models of this shape land in the high 70s on
# MNLI, far enough above chance for Table 5's gaps (NSP on QNLI/MNLI, bidirectional vs LTR on
# SQuAD) to show, and small enough that all four Table 5 rows pre-train in an afternoon. Small
# models take larger learning rates (2e-4 here; 1e-4 fine-tuning); 3 restarts per grid point.
BUDGET: dict[str, Any] = {
    "pretrain": {
        "objective": "mlm_nsp",
        "model": {"layers": 4, "hidden": 512, "heads": 8, "max_position": 512, "dropout": 0.1},
        "steps": 100_000,
        "batch_size": 256,
        "max_seq_len": 128,
        "learning_rate": 2e-4,
        "warmup_fraction": 0.01,
    },
    "finetune": {
        "grid": {"batch_size": [32], "learning_rate": [1e-4, 5e-5, 3e-5], "epochs": [3]},
        "restarts": 3,
        "max_seq_len": 128,
    },
    "resources": {"gpus_per_trial": 1.0, "cpus_per_trial": 4.0},
    "checkpointing": {"every_steps": 2000},
}

PRESETS: dict[str, dict[str, Any]] = {"tiny": TINY, "budget": BUDGET, "paper": PAPER}


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `top` over `base`, merging nested tables key by key (lists are replaced)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
