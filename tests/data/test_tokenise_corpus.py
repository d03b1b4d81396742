"""Parallel tokenisation: the same ids as one process, in input order, reading ahead a bounded
window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertabl.data import tokenise_corpus
from bertabl.data.readers import Piece
from bertabl.data.tokenizer import build_tokenizer
from bertabl.trial.data import DataRef

SYNTHETIC = DataRef(identity={"tokenizer": "synthetic"}, location={"tokenizer": None})


def _pieces(n: int, read: list[int]):
    for i in range(n):
        read.append(i)
        words = ["the", "red", "with", "near", "of", "a"][: 1 + i % 6]
        yield Piece([" ".join(words) + f" {i}", "the ."], i % 3 == 2, float(i + 1))


def test_worker_processes_give_the_same_ids_in_order(tmp_path: Path, monkeypatch):
    tokenizer = build_tokenizer(SYNTHETIC, tmp_path)
    backend = tokenizer.backend_tokenizer.to_str()
    monkeypatch.setattr(tokenise_corpus, "TASK_CHARS", 200)  # many small tasks
    monkeypatch.setattr(tokenise_corpus, "POOL_MIN_CHARS", 0)
    read: list[int] = []
    used: dict = {}
    results = []
    for pieces, ids, lengths in tokenise_corpus.tokenize_tasks(
        _pieces(300, read), backend, np.uint16, 2, used
    ):
        if not results:  # the first result came back while the input was read only so far
            ahead = len(read)
        results.append((pieces, ids, lengths))
    assert used == {"workers": 2}
    assert ahead < 300  # a bounded window, not the whole input queued at once
    pieces = [p for r in results for p in r[0]]
    assert [p.done for p in pieces] == [float(i + 1) for i in range(300)]  # input order
    segments = [s for p in pieces for s in p.segments]
    expected = tokenizer(segments, add_special_tokens=False)["input_ids"]
    assert np.concatenate([r[2] for r in results]).tolist() == [len(e) for e in expected]
    assert np.concatenate([r[1] for r in results]).tolist() == [t for e in expected for t in e]


def test_a_small_corpus_is_tokenised_in_this_process(tmp_path: Path):
    tokenizer = build_tokenizer(SYNTHETIC, tmp_path)
    used: dict = {}
    results = list(
        tokenise_corpus.tokenize_tasks(
            _pieces(5, []), tokenizer.backend_tokenizer.to_str(), np.uint16, 8, used
        )
    )
    assert used == {"workers": 1} and len(results) == 1
