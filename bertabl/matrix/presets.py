"""Scale presets: defaults a matrix inherits for every key it does not set itself.

Each preset is a partial matrix in `scales/<name>.toml` (read like a matrix file, with the
reasons for its values beside them). The same matrix runs at another scale with `--scale`;
single keys change with `--set`. Precedence (lowest to highest): preset < matrix file < the
file's `[scales.<scale>]` table < --set overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertabl.io import tomllib

SCALES = Path(__file__).with_name("scales")
PRESETS: dict[str, dict[str, Any]] = {
    name: tomllib.loads((SCALES / f"{name}.toml").read_text(encoding="utf-8"))
    for name in ("tiny", "budget", "paper")
}
TINY, BUDGET, PAPER = PRESETS["tiny"], PRESETS["budget"], PRESETS["paper"]


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `top` over `base`, merging nested tables key by key (lists are replaced)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
