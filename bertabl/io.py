"""Files written so that a reader, a crash or a concurrent writer never sees half of one.

The bottom floor: every layer that writes state (records, checkpoints, caches, vocabularies)
writes through these two functions.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["atomic_write", "atomic_write_json", "tomllib"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename over `path` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON with sorted keys, written atomically."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())
