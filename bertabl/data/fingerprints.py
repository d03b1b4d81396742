"""The input files a plan was made from: path, size, modification time and content hash of every
file whose bytes decide a trial id (the corpus, a tokenizer, a task's splits, a custom task's
files and metric modules, a checkpoint folder's model files).

Whoever hashes such a file calls `file_sha256` (or `note`, when it hashes the bytes its own way),
and while a plan is being built (`recording()`), each file is noted once. The run directory keeps
them with the plan it ran (matrix/stored_plan.py), so a later command can tell what changed:
cheaply, from size and modification time alone (`changed_on_disk`: nothing is read), or
exactly, from the hashes of a new plan (`changed_content`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fingerprint:
    path: str  # absolute
    size: int  # bytes
    mtime_ns: int
    sha256: str  # hex digest of the file's bytes

    def differs_on_disk(self) -> bool | None:
        """Whether the file now has another size or modification time (None: it is gone)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_size, stat.st_mtime_ns) != (self.size, self.mtime_ns)


_noted: ContextVar[dict[str, Fingerprint] | None] = ContextVar("bertabl_inputs", default=None)


@contextlib.contextmanager
def recording() -> Iterator[dict[str, Fingerprint]]:
    """Note every input file hashed inside the block: path -> its Fingerprint."""
    noted: dict[str, Fingerprint] = {}
    token = _noted.set(noted)
    try:
        yield noted
    finally:
        _noted.reset(token)


def file_sha256(path: Path) -> bytes:
    """The SHA-256 digest of a file's bytes (read in chunks: a corpus may exceed memory), noted
    as an input when a plan is being recorded."""
    path = Path(path)
    stat = path.stat()  # before reading: a file changed while it is read then looks changed
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").digest()
    note(path, digest.hex(), stat)
    return digest


def note(path: Path, sha256: str, stat: os.stat_result) -> None:
    """Note an input file hashed by the caller (`stat` taken before it was read)."""
    noted = _noted.get()
    if noted is not None:
        key = str(Path(path).resolve())
        noted[key] = Fingerprint(key, stat.st_size, stat.st_mtime_ns, sha256)


def changed_on_disk(inputs: Iterable[Fingerprint]) -> list[Fingerprint]:
    """The inputs whose size or modification time differs now (nothing is read or hashed;
    an input that is gone is not counted: a finished run's data may be deleted)."""
    return [f for f in inputs if f.differs_on_disk()]


def changed_content(before: Iterable[Fingerprint], now: Iterable[Fingerprint]) -> list[str]:
    """Each input file at the same path whose content differs between two plans, as
    `path (size a -> b bytes)`."""
    current = {f.path: f for f in now}
    return [
        f"{f.path} ({f.size:,} -> {current[f.path].size:,} bytes)"
        for f in before
        if f.path in current and current[f.path].sha256 != f.sha256
    ]
