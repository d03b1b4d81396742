"""Pre-training batches: this rank's rows of each global batch, collated and masked, prefetched.

Every rank walks the same pair stream (pairs.py: offsets only, cheap), so all agree on what the
global batch is; each then reads token ids for, and masks, only its own rows
(`BatchLayout.rows`), one micro-batch at a time, padded to that micro-batch's longest pair.
Masks come from each example's key (masking.py), so any layout trains on the same examples with
the same masks. A background thread builds the next batches while the model trains on this one
(into pinned memory when the device is a GPU, so the copy to it can overlap compute).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from bertabl.pretrain.masking import Masker
from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.pretrain.pairs import Cursor, Position
from bertabl.training import IGNORE_INDEX
from bertabl.trial.layout import BatchLayout
from bertabl.trial.pretrain import Objective

# A step's data: (this rank's micro-batches, masked tokens in them, stream position after it)
Step = tuple[list[dict[str, torch.Tensor]], int, Position]


def encode_rows(
    tokens: np.ndarray, rows: np.ndarray, cls_id: int, sep_id: int, pad_id: int
) -> dict[str, np.ndarray]:
    """[CLS] A [SEP] B [SEP] for each pair row (A/B offsets into `tokens`), right-padded to the
    longest: input_ids, token_type_ids, attention_mask, special ([CLS]/[SEP])."""
    a0, a1, b0, _, _ = rows.T
    la, lb = (a1 - a0)[:, None], (rows[:, 3] - b0)[:, None]
    n = la + lb + 3
    j = np.arange(int(n.max()) if len(rows) else 0)[None, :]
    in_a = (j >= 1) & (j <= la)
    in_b = (j >= la + 2) & (j < n - 1)
    source = np.where(in_a, a0[:, None] + j - 1, b0[:, None] + j - la - 2)
    text = in_a | in_b
    real = j < n
    input_ids = np.full(real.shape, pad_id, dtype=np.int64)
    input_ids[text] = tokens[source[text]]
    special = real & ~text
    input_ids[special & (j == 0)] = cls_id
    input_ids[special & (j > 0)] = sep_id
    return {
        "input_ids": input_ids,
        "token_type_ids": (in_b | (j == n - 1)).astype(np.int64),
        "attention_mask": real.astype(np.int64),
        "special": special,
    }


def collate(
    tokens: np.ndarray,
    rows: np.ndarray,
    keys: np.ndarray,
    tokenizer_ids: tuple[int, int, int],
    masker: Masker,
    objective: Objective,
    positions: bool = False,
) -> dict[str, torch.Tensor]:
    """One (micro-)batch as the model takes it; `positions` adds the flat masked positions
    (the sparse MLM decoder's index, found here on the CPU rather than with a device sync)."""
    cls_id, sep_id, pad_id = tokenizer_ids
    encoded = encode_rows(tokens, rows, cls_id, sep_id, pad_id)
    real = encoded["attention_mask"].astype(bool)
    inputs, labels = masker(encoded["input_ids"], encoded["special"], real, keys)
    batch = {
        "input_ids": torch.from_numpy(inputs),
        "token_type_ids": torch.from_numpy(encoded["token_type_ids"]),
        "attention_mask": torch.from_numpy(encoded["attention_mask"]),
        "labels": torch.from_numpy(labels),
    }
    if OBJECTIVES[objective].nsp:
        batch["next_sentence_label"] = torch.from_numpy(rows[:, 4].copy())
    batch["labels"] = OBJECTIVES[objective].targets(batch["labels"])
    if positions:
        batch["masked_positions"] = torch.from_numpy(np.flatnonzero(labels.ravel() != IGNORE_INDEX))
    return batch


def rank_steps(
    cursor: Cursor,
    layout: BatchLayout,
    rank: int,
    masker: Masker,
    objective: Objective,
    tokenizer_ids: tuple[int, int, int],
) -> Iterator[Step]:
    """Endless steps of rank `rank`, from the cursor's position on."""
    tokens = cursor.stream.store.tokens
    sparse = OBJECTIVES[objective].masks  # the masked positions alone are decoded
    while True:
        rows, keys = cursor.take(layout.batch_size)
        micro = [
            collate(tokens, rows[part], keys[part], tokenizer_ids, masker, objective, sparse)
            for part in layout.rows(rank)
        ]
        masked = sum(int((m["labels"] != IGNORE_INDEX).sum()) for m in micro)
        yield micro, masked, cursor.position


class Prefetcher:
    """Runs a step iterator on a background thread, `depth` steps ahead.

    Determinism: the iterator's randomness is all its own (seeded pairs, keyed masks), never the
    global RNGs the training thread draws dropout from, so the thread changes no result. An
    error in the thread is raised by the `next` that would have returned its step."""

    def __init__(self, steps: Iterator[Step], depth: int = 2, pin: bool = False):
        self.steps, self.pin = steps, pin
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bertabl-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for micro, masked, position in self.steps:
                if self.pin:
                    micro = [{k: v.pin_memory() for k, v in m.items()} for m in micro]
                if not self._put((micro, masked, position)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the training thread
            self._put(_Failure(error))

    def _put(self, item: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Step:
        item = self.queue.get()
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error
