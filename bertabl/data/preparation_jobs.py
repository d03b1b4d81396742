"""Data preparation: what a run builds before its first trial (and `bertabl plan` lists).

One job per distinct (corpus, tokenizer) among the pre-training trials (a trained vocabulary
counts once per size): train the vocabulary if the tokenizer is `train`, then tokenise the
corpus into a token store (token_store.py) with every core. Trials then only open the store.
A job whose store is already in the run's cache (an earlier run, the same content) is skipped.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertabl.data.corpus import corpus_size, describe_corpus, iter_pieces
from bertabl.data.token_store import ensure_store, is_trained, store_dir
from bertabl.data.tokenizer import build_tokenizer, trained_vocab_dir
from bertabl.trial.data import DataRef

# (what, total or None, unit) when a stage starts; the input read so far as it goes
Stage = Callable[[str, float | None, str], None]
Progress = Callable[[float], None]


@dataclass(frozen=True)
class DataJob:
    data: DataRef
    vocab_size: int  # of a trained vocabulary; 0 for any other tokenizer
    trials: tuple[str, ...]

    @property
    def corpus(self) -> str:
        return describe_corpus(self.data)

    @property
    def tokenizer(self) -> str:
        identity, location = self.data.identity["tokenizer"], self.data.location["tokenizer"]
        if identity == "synthetic":
            return "synthetic vocabulary"
        if is_trained(self.data):
            return f"WordPiece vocabulary of {self.vocab_size} trained on the corpus"
        if "hub" in identity:
            return f"hub:{identity['hub']}"
        return str(location)

    def prepared(self, cache_dir: Path) -> bool:
        if is_trained(self.data) and not self.vocab_file(cache_dir).is_file():
            return False
        return (store_dir(self.data, cache_dir, self.vocab_size) / "meta.json").is_file()

    def vocab_file(self, cache_dir: Path) -> Path:
        return trained_vocab_dir(self.data, self.vocab_size, cache_dir) / "vocab.txt"


def data_jobs(trials: Iterable[tuple[str, Any]]) -> list[DataJob]:
    """The jobs of (trial id, PretrainTrialConfig) pairs, in first-use order (an untrained
    control reads no corpus: it needs none)."""
    jobs: dict[str, tuple[DataRef, int, list[str]]] = {}
    for trial_id, config in trials:
        if config.pretrain.untrained:
            continue
        size = config.pretrain.vocab_size if is_trained(config.data) else 0
        key = json.dumps([config.data.identity, size], sort_keys=True)
        jobs.setdefault(key, (config.data, size, []))[2].append(trial_id)
    return [DataJob(data, size, tuple(ids)) for data, size, ids in jobs.values()]


def cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_job(
    job: DataJob, cache_dir: Path, stage: Stage, progress: Progress, workers: int | None = None
) -> dict[str, Any]:
    """Train the vocabulary (if the tokenizer is `train`) and build the token store; returns
    the store's meta.json plus where it is and how long each part took."""
    with tempfile.TemporaryDirectory(prefix="bertabl-vocab-") as workdir:
        return _run_job(job, cache_dir, Path(workdir), stage, progress, workers or cores())


def _run_job(job, cache_dir, workdir, stage, progress, workers) -> dict[str, Any]:
    timings: dict[str, float] = {}
    total, unit = corpus_size(job.data)
    tokenizer = None
    if is_trained(job.data) and not job.vocab_file(cache_dir).is_file():
        stage(f"training a {job.vocab_size}-entry WordPiece vocabulary", total, unit)
        started = time.perf_counter()
        tokenizer = build_tokenizer(
            job.data,
            workdir,
            job.vocab_size,
            documents=_segments(iter_pieces(job.data), progress),
            cache_dir=cache_dir,
        )
        timings["vocabulary_seconds"] = time.perf_counter() - started
    folder = store_dir(job.data, cache_dir, job.vocab_size)
    if not (folder / "meta.json").is_file():
        stage(f"tokenising {job.corpus}", total, unit)
        started = time.perf_counter()
        if tokenizer is None:
            tokenizer = build_tokenizer(job.data, workdir, job.vocab_size, cache_dir=cache_dir)
        ensure_store(job.data, tokenizer, cache_dir, job.vocab_size, workers, progress)
        timings["store_seconds"] = time.perf_counter() - started
    meta = json.loads((folder / "meta.json").read_text())
    return meta | timings | {"path": str(folder)}


def _segments(pieces: Iterator, progress: Progress) -> Iterator[list[str]]:
    for piece in pieces:
        progress(piece.done)
        yield piece.segments
