"""Tokenising a streamed corpus over every core, in order, with bounded memory.

Pieces of documents (readers.py) are grouped into tasks of about TASK_CHARS characters; worker
processes tokenise tasks with the `tokenizers` backend of the trial's tokenizer (the same object
transformers' fast tokenizer calls, sent as its JSON, so ids are the trial tokenizer's), and
results come back in input order, at most WINDOW tasks per worker in flight.

Written here rather than with `datasets.map(batched=True, num_proc=...)`, which does the
parallel part but wants the input as an Arrow dataset first: the corpus would be written once
as text to Arrow and again as ids, shards re-joined, then flattened into the token store; measured
on the Gutenberg books x10 (39 MB, 2 cores) that path ran at 2.8 MB/s and wrote 59 MB of
Arrow besides the store, where this one streams straight into the store (bench/data.py prints
its MB/s). `concurrent.futures.Executor.map` is not used either: it submits the whole input at
once, which would hold a 20 GB dump in the task queue.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

TASK_CHARS = 1 << 20  # ~1 MB of text a task: large enough that pickling is noise
WINDOW = 3  # tasks in flight per worker
# Below this much text a pool costs more than it saves (starting a worker: ~0.3 s).
POOL_MIN_CHARS = 8 << 20

_BACKEND = None  # the worker's tokenizers.Tokenizer


def tokenize_tasks(
    pieces: Iterable, tokenizer_json: str, dtype: np.dtype, workers: int, used: dict | None = None
) -> Iterator[tuple[list, np.ndarray, np.ndarray]]:
    """(the pieces of a task, their token ids concatenated, each segment's token count), in
    the order of `pieces`; the pool starts only once the input outgrows POOL_MIN_CHARS
    (`used["workers"]` says how many processes tokenised)."""
    used = {} if used is None else used
    tasks = _tasks(pieces)
    first: list[tuple[list, list[str]]] = []
    chars = 0
    for task in tasks:  # read ahead: a small corpus never starts the pool
        first.append(task)
        chars += sum(len(s) for s in task[1])
        if chars >= POOL_MIN_CHARS:
            break
    if workers <= 1 or chars < POOL_MIN_CHARS:
        used["workers"] = 1
        _init(tokenizer_json)
        for group in (first, tasks):
            for task_pieces, segments in group:
                yield (task_pieces, *encode(segments, dtype))
        return
    used["workers"] = workers
    yield from _pooled(_chain(first, tasks), tokenizer_json, dtype, workers)


def _pooled(tasks, tokenizer_json: str, dtype, workers: int):
    # spawn, not fork: the driver has threads (the live display) and fork would copy them
    # mid-state; a spawned worker imports only this module (numpy + tokenizers).
    context = multiprocessing.get_context("spawn")
    pending: deque[tuple[list, Future]] = deque()
    pool = ProcessPoolExecutor(workers, context, initializer=_init, initargs=(tokenizer_json,))
    with pool:
        try:
            for task_pieces, segments in tasks:
                pending.append((task_pieces, pool.submit(encode, segments, dtype)))
                if len(pending) >= WINDOW * workers:
                    done_pieces, future = pending.popleft()
                    yield (done_pieces, *future.result())
            while pending:
                done_pieces, future = pending.popleft()
                yield (done_pieces, *future.result())
        finally:
            for _, future in pending:
                future.cancel()


def _chain(first, rest):
    yield from first
    yield from rest


def _tasks(pieces: Iterable) -> Iterator[tuple[list, list[str]]]:
    batch: list = []
    segments: list[str] = []
    chars = 0
    for piece in pieces:
        batch.append(piece)
        segments.extend(piece.segments)
        chars += sum(len(s) for s in piece.segments)
        if chars >= TASK_CHARS:
            yield batch, segments
            batch, segments, chars = [], [], 0
    if batch:
        yield batch, segments


def _init(tokenizer_json: str) -> None:
    """Load the backend tokenizer (in a worker, or in this process for a small corpus)."""
    global _BACKEND
    # This process's parallelism is ours (one worker per core): no rayon threads inside
    # `encode_batch`, and no "process just got forked" warning from tokenizers later.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    _BACKEND = Tokenizer.from_str(tokenizer_json)
    _BACKEND.no_truncation()  # a saved tokenizer.json may carry a model's max length
    _BACKEND.no_padding()
    if multiprocessing.parent_process() is not None:
        _exit_with_parent()


def encode(segments: list[str], dtype) -> tuple[np.ndarray, np.ndarray]:
    """(token ids of every segment, concatenated; each segment's length) without specials."""
    # the `_fast` variant (tokenizers >= 0.20) skips character offsets: ~15% faster
    encode_batch = getattr(_BACKEND, "encode_batch_fast", _BACKEND.encode_batch)
    encodings = encode_batch(segments, add_special_tokens=False)
    ids = [e.ids for e in encodings]
    lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def _exit_with_parent() -> None:
    """A worker ends when the process that started it ends (killed mid-preparation, say)."""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="bertabl-tokenize-parent", daemon=True).start()
