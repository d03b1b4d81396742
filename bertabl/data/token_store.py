"""The token store: a tokenised corpus on disk, memory-mapped, built once per (corpus, tokenizer).

Every trial and data-parallel rank of a run maps the same files read-only (the operating
system's page cache holds one copy), so memory no longer grows with the corpus: a rank touches
the pages of the documents its batches read. Layout of `<run dir>/cache/tokens-<key>/`, in the
spirit of Megatron-LM's indexed datasets (`.bin` tokens + offsets):

    tokens.bin     every sentence's token ids, concatenated: uint16 when the vocabulary fits
                   (BERT's 30,522 does), else int32
    sentences.bin  int64, sentences + 1 offsets into tokens (sentence i = tokens[s[i]:s[i+1]])
    documents.bin  int64, documents + 1 offsets into sentences
    meta.json      counts, dtype, vocabulary size, build time; written last

Why raw numpy memmaps and not an Arrow dataset (`datasets`), measured on the Gutenberg books x10
(2 cores): reading a document's tokens from the store is a slice of a memmap (microseconds,
zero-copy, any offset), where `Dataset.__getitem__` on a list-of-lists column converted each
document to Python lists (4.1 ms a book) and a zero-copy path through pyarrow needs a chunk index
per shard; and building the Arrow dataset (from_generator + map(num_proc=2)) ran at 2.8 MB/s and
left 59 MB of Arrow files beside a store of 2 bytes a token. The pair builder reads offsets and
slices, which is what flat arrays do best.

The key is a hash of the corpus and tokenizer identities (content hashes; see corpus_data), so
a run directory reuses its store across runs, and of the trained vocabulary's file when the
tokenizer is `train`. The store is built under a file lock into a `.partial-<pid>` folder that
is renamed into place when complete: a kill mid-build leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertabl.data.corpus import iter_pieces, too_few_documents
from bertabl.data.tokenise_corpus import tokenize_tasks
from bertabl.data.tokenizer import trained_vocab_dir
from bertabl.errors import DataError
from bertabl.io import atomic_write_json
from bertabl.trial.data import DataRef

STORE_FORMAT = 1  # bump when the files' layout or content rules change
FILES = ("tokens.bin", "sentences.bin", "documents.bin")

Progress = Callable[[float], None]  # receives the input read so far (corpus_size's unit)


@dataclass(frozen=True)
class TokenStore:
    """A token store's arrays (memory-mapped from its folder, or in memory for small tests)."""

    tokens: np.ndarray
    sentences: np.ndarray  # offsets into tokens, length sentences + 1
    documents: np.ndarray  # offsets into sentences, length documents + 1
    vocab_size: int
    path: Path | None = None

    @classmethod
    def open(cls, folder: Path) -> TokenStore:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != STORE_FORMAT:
            raise DataError(
                f"{folder}: a token store of format {meta.get('format')}, this bertabl reads "
                f"format {STORE_FORMAT}; delete the folder and run again to rebuild it"
            )
        return cls(
            tokens=_map(folder / "tokens.bin", meta["dtype"], meta["tokens"]),
            sentences=_map(folder / "sentences.bin", "int64", meta["sentences"] + 1),
            documents=_map(folder / "documents.bin", "int64", meta["documents"] + 1),
            vocab_size=meta["vocab_size"],
            path=folder,
        )

    @classmethod
    def from_documents(cls, documents: list[list[list[int]]], vocab_size: int = 0) -> TokenStore:
        """An in-memory store of tokenised documents (lists of sentences of ids)."""
        sentences = [s for d in documents for s in d]
        tokens = np.fromiter((t for s in sentences for t in s), dtype=np.int64)
        return cls(
            tokens=tokens,
            sentences=np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(
                np.int64
            ),
            documents=np.concatenate([[0], np.cumsum([len(d) for d in documents])]).astype(
                np.int64
            ),
            vocab_size=vocab_size or int(tokens.max(initial=0)) + 1,
        )

    @property
    def n_documents(self) -> int:
        return len(self.documents) - 1

    def document_lengths(self) -> np.ndarray:
        """Tokens per document (one int64 a document: O(documents), not O(tokens))."""
        starts = self.sentences[self.documents]
        return np.diff(starts)

    def document(self, index: int) -> list[list[int]]:
        """Document `index` as lists of token ids (for tests and small tools)."""
        first, end = int(self.documents[index]), int(self.documents[index + 1])
        bounds = self.sentences[first : end + 1].tolist()
        return [self.tokens[a:b].tolist() for a, b in zip(bounds, bounds[1:], strict=False)]


def _map(path: Path, dtype: str, count: int) -> np.ndarray:
    if count == 0:  # an empty file cannot be mapped
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


def is_trained(data: DataRef) -> bool:
    tokenizer = data.identity["tokenizer"]
    return isinstance(tokenizer, dict) and "trained" in tokenizer


def store_dir(data: DataRef, cache_dir: Path, vocab_size: int = 0) -> Path:
    """The folder of `data`'s token store under `cache_dir` (built or not). A trained
    vocabulary's file must exist already: its content is part of the key."""
    trained = None
    if is_trained(data):
        vocab = trained_vocab_dir(data, vocab_size, cache_dir) / "vocab.txt"
        trained = hashlib.sha256(vocab.read_bytes()).hexdigest()[:16]
    key = json.dumps(
        {"format": STORE_FORMAT, "corpus": data.identity, "trained_vocab": trained},
        sort_keys=True,
    )
    return Path(cache_dir) / f"tokens-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def ensure_store(
    data: DataRef,
    tokenizer,
    cache_dir: Path,
    vocab_size: int = 0,
    workers: int = 1,
    progress: Progress | None = None,
) -> Path:
    """`data`'s token store in `cache_dir`, built now (under a lock) unless it exists."""
    folder = store_dir(data, cache_dir, vocab_size)
    if (folder / "meta.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent trials: the first builds, the rest wait
        if (folder / "meta.json").is_file():
            return folder
        for stale in folder.parent.glob(folder.name + ".partial-*"):  # a killed build's
            shutil.rmtree(stale, ignore_errors=True)
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        try:
            build_store(data, tokenizer, partial, workers, progress)
            os.rename(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return folder


@contextlib.contextmanager
def trial_store(data: DataRef, tokenizer, cache_dir: Path | None, vocab_size: int = 0):
    """The store a trial reads: the run's (prepared before any trial started, or built now),
    or, with no cache dir (tests, benchmarks), a temporary one removed afterwards."""
    if cache_dir is not None:
        yield ensure_store(data, tokenizer, cache_dir, vocab_size)
        return
    with tempfile.TemporaryDirectory(prefix="bertabl-tokens-") as tmp:
        folder = Path(tmp) / "store"
        build_store(data, tokenizer, folder, workers=1)
        yield folder


def build_store(
    data: DataRef,
    tokenizer,
    folder: Path,
    workers: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Tokenise `data`'s corpus into a store at `folder` (streamed, `workers` processes)."""
    started = time.perf_counter()
    vocab = len(tokenizer)
    dtype = np.dtype(np.uint16 if vocab <= 1 << 16 else np.int32)
    folder.mkdir(parents=True, exist_ok=True)
    writer = _Writer(folder, dtype)
    used: dict[str, int] = {}
    try:
        backend = _backend(tokenizer).to_str()
        tasks = tokenize_tasks(iter_pieces(data), backend, dtype, workers, used)
        for pieces, ids, lengths in tasks:
            writer.add(pieces, ids, lengths)
            if progress is not None:
                progress(pieces[-1].done)
    finally:
        writer.close()
    if writer.documents < 2:
        raise too_few_documents(data, writer.documents)
    meta = {
        "format": STORE_FORMAT,
        "dtype": dtype.name,
        "tokens": writer.tokens,
        "sentences": writer.sentences,
        "documents": writer.documents,
        "vocab_size": vocab,
        "seconds": round(time.perf_counter() - started, 3),
        "workers": used.get("workers", 1),
    }
    atomic_write_json(folder / "meta.json", meta)
    return meta


def _backend(tokenizer):
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise DataError(
            f"tokenizer {type(tokenizer).__name__} has no fast (tokenizers) backend; the token "
            "store needs one: use a WordPiece vocab.txt or a folder with tokenizer.json"
        )
    return backend


class _Writer:
    """Appends tokenised pieces to the store's files; empty sentences and documents are
    dropped (a pair needs tokens on both sides)."""

    def __init__(self, folder: Path, dtype: np.dtype):
        self.files = {name: open(folder / name, "wb") for name in FILES}
        self.dtype = dtype
        self.tokens = self.sentences = self.documents = 0
        self.document_start = 0  # the open document's first sentence
        for name in ("sentences.bin", "documents.bin"):
            np.zeros(1, np.int64).tofile(self.files[name])

    def add(self, pieces: list, ids: np.ndarray, lengths: np.ndarray) -> None:
        kept = lengths > 0
        ends = self.tokens + np.cumsum(lengths[kept])
        ids.astype(self.dtype, copy=False).tofile(self.files["tokens.bin"])
        ends.astype(np.int64).tofile(self.files["sentences.bin"])
        # each piece's last segment, counted in kept sentences: where a document may end
        piece_ends = np.cumsum([len(p.segments) for p in pieces])
        kept_before = np.concatenate([[0], np.cumsum(kept)])[piece_ends]
        closing = np.array([p.ends_document for p in pieces], dtype=bool)
        document_ends = []
        for end in (self.sentences + kept_before[closing]).tolist():
            if end > self.document_start:
                document_ends.append(end)
                self.document_start = end
        np.asarray(document_ends, dtype=np.int64).tofile(self.files["documents.bin"])
        self.tokens += int(lengths.sum())
        self.sentences += int(kept.sum())
        self.documents += len(document_ends)

    def close(self) -> None:
        if self.sentences > self.document_start:  # a corpus that ended mid-document
            np.asarray([self.sentences], np.int64).tofile(self.files["documents.bin"])
            self.documents += 1
            self.document_start = self.sentences
        for handle in self.files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
