"""Per-trial checkpoints that survive being killed at any moment.

A checkpoint is one `torch.save`d dict (model, optimizer, scheduler, RNG states, data position,
metric history) named by its step, written to a temp file, fsynced and renamed into place, with
its SHA-256 in a sidecar file. Loading walks from the newest checkpoint back and skips any whose
bytes do not match their checksum (a write cut short by a kill, a bad disk), with a warning. The
newest `keep` checkpoints are kept.

Why not only Tune's checkpoints: they are copied without checksums, `num_to_keep` deletes the
older ones we fall back to, and a new Tuner (a re-run, `bertabl resume`) starts without them.
These live in the run directory next to the trial's record, so every way of resuming finds them.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

from bertabl.io import atomic_write

NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


class Checkpointer:
    """Saves and restores one trial's training state under `directory`."""

    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory)
        self.keep = max(1, keep)

    def paths(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if NAME.match(p.name)]
        return sorted(found, key=lambda p: int(NAME.match(p.name).group(1)))

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write `state` as the checkpoint of `step` (atomically) and prune old ones."""
        import torch  # here, not at the top: the driver (`bertabl run`, `status`) needs no torch

        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        path = self.directory / f"ckpt-{step:09d}.pt"
        atomic_write(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
        atomic_write(path, data)
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".sha256").unlink(missing_ok=True)
        return path

    def load_latest(self) -> dict[str, Any] | None:
        """The newest intact checkpoint's state, or None when there is none."""
        for path in reversed(self.paths()):
            data = path.read_bytes()
            digest = path.with_suffix(".sha256")
            expected = digest.read_text().strip() if digest.is_file() else None
            if expected != hashlib.sha256(data).hexdigest():
                warnings.warn(
                    f"{path}: checksum mismatch (truncated or corrupt); falling back to the "
                    "previous checkpoint",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            import torch

            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return None

    def clear(self) -> None:
        """Remove every checkpoint (the trial finished; its results live elsewhere)."""
        for path in self.paths():
            path.unlink(missing_ok=True)
            path.with_suffix(".sha256").unlink(missing_ok=True)
