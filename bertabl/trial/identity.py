"""Trial ids: a short hash of a trial's fully resolved config.

The id is the same across runs, machines and key order in the TOML, and changes with any value
that affects the result. Keys named "location" (where data files live) are left out: content
hashes identify data, so the same data at another path is the same trial.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Bump only when the meaning of a trial config changes, so old results are never mistaken for new.
TRIAL_SCHEMA = 1


def trial_id(prefix: str, config: dict[str, Any]) -> str:
    """`prefix-` + 8 hex digits of the SHA-256 of the config's canonical JSON (no locations)."""
    canonical = json.dumps(
        {"trial_schema": TRIAL_SCHEMA, **_identity(config)}, sort_keys=True, separators=(",", ":")
    )
    return f"{prefix}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def _identity(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _identity(v) for k, v in value.items() if k != "location"}
    if isinstance(value, list):
        return [_identity(v) for v in value]
    return value
