"""NSP pairs drawn lazily from a token store: memory O(block), any position reachable directly.

BERT's pairs, as its release builds them (`create_pretraining_data.py`; transformers' collators
mask tokens but build no NSP pairs): walk each document, gather sentences up to a target
length, split them into A and B at a random sentence boundary; half the time replace B with
sentences from a random other document (NotNext) and give the unused sentences back. One
deliberate difference: a chunk of a single sentence is split inside the sentence rather than
forced to NotNext, so IsNext stays at 50%. A small fraction of pairs use a shorter target length
so the model also sees short inputs. The `mlm` objective ("No NSP") uses the same pairs and
drops only the NSP loss, so that ablation changes exactly one thing, the loss (the paper does
not say which input format its No-NSP model used; keeping the inputs fixed isolates the
objective).

A pass over the corpus is a seeded permutation of the training documents, cut into blocks of
about BLOCK_TOKENS tokens (consecutive documents of the permutation). A block's pairs are built
with that algorithm from an RNG seeded by (stream, pass, block) and then shuffled, so batches
mix many documents (BERT's release shuffles all of a pass's instances; a block is the part of a
pass a resume has to rebuild). A pair is five integers, (A start, A end,
B start, B end, label), offsets into the store's tokens: ids are read from the memory map only
when a batch is collated (batches.py), so a block of a million tokens is a few hundred KB.

The stream's position is (pass, block, offset in the block): resuming rebuilds one block, never
the pass. Each example also gets a 64-bit key from (stream, pass, block, offset), from which its
masks are drawn (masking.py), so masks depend on what an example is, not on which batch, rank or
micro-batch it lands in.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np

from bertabl.data.token_store import TokenStore
from bertabl.errors import DataError

IS_NEXT, NOT_NEXT = 0, 1  # transformers' BertForPreTraining label convention
BLOCK_TOKENS = 1 << 20  # tokens of documents per block: ~8k pairs of 128 tokens
SHORT_SEQ_PROB = 0.1  # BERT's: a pair built to a random shorter target length
Position = tuple[int, int, int]  # (pass, block, offset)


def seed_words(text: str) -> list[int]:
    """Four 32-bit words from a string: a numpy seed for any tag (negative seeds included)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def seed_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


class PairStream:
    """The pairs of `documents` (store document indices) at `seq_len`, pass after pass."""

    def __init__(
        self,
        store: TokenStore,
        documents: np.ndarray,
        seq_len: int,
        tag: str,
        cls_id: int,
        sep_id: int,
        short_seq_prob: float = SHORT_SEQ_PROB,
    ):
        if len(documents) < 2:
            raise ValueError("NSP pairs need at least two documents")
        self.store = store
        self.docs = np.asarray(documents, dtype=np.int64)
        self.doc_lengths = store.document_lengths()[self.docs]
        self.max_tokens = seq_len - 3  # [CLS] A [SEP] B [SEP]
        self.seq_len, self.tag = seq_len, tag
        self.cls_id, self.sep_id = cls_id, sep_id
        self.short_seq_prob = short_seq_prob
        self._pass: tuple[int, np.ndarray, np.ndarray] | None = None

    # -- passes and blocks -----------------------------------------------------------------

    def order(self, pass_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(this pass's permutation of the documents, the index where each block starts)."""
        if self._pass is None or self._pass[0] != pass_index:
            rng = np.random.default_rng(seed_words(f"{self.tag}/pass/{pass_index}/order"))
            order = rng.permutation(len(self.docs))
            before = np.cumsum(self.doc_lengths[order]) - self.doc_lengths[order]
            starts = np.flatnonzero(np.diff(before // BLOCK_TOKENS, prepend=-1))
            self._pass = (pass_index, order, starts)
        return self._pass[1], self._pass[2]

    def blocks(self, pass_index: int) -> int:
        return len(self.order(pass_index)[1])

    def block(self, pass_index: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(pairs [n, 5], their masking keys [n] uint64) of one block, shuffled."""
        order, starts = self.order(pass_index)
        end = starts[block + 1] if block + 1 < len(starts) else len(order)
        where = f"{self.tag}/pass/{pass_index}/block/{block}"
        rng = random.Random(where)
        pairs: list[tuple[int, int, int, int, int]] = []
        for k in order[starts[block] : end].tolist():
            self.document_pairs(k, rng, pairs)
        rows = np.array(pairs, dtype=np.int64).reshape(-1, 5)
        rows = rows[np.random.default_rng(seed_words(where + "/shuffle")).permutation(len(rows))]
        keys = example_keys(seed_int(where), len(rows))
        return rows, keys

    def cursor(self, position: Position = (0, 0, 0)) -> Cursor:
        return Cursor(self, position)

    # -- BERT's pair algorithm, on sentence offsets ------------------------------------------

    def document_pairs(self, k: int, rng: random.Random, out: list) -> None:
        """Append the pairs of training document `k` (index into self.docs) to `out`."""
        store, max_tokens = self.store, self.max_tokens
        doc = int(self.docs[k])
        first, end = int(store.documents[doc]), int(store.documents[doc + 1])
        bounds = store.sentences[first : end + 1].tolist()  # token offsets of its sentences
        n = end - first
        target = max_tokens
        if rng.random() < self.short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk_start, length, i = 0, 0, 0
        while i < n:
            length += bounds[i + 1] - bounds[i]
            if i == n - 1 or length >= target:
                label = IS_NEXT if rng.random() < 0.5 else NOT_NEXT
                count = i - chunk_start + 1
                if count == 1 and bounds[i + 1] - bounds[i] < 2:
                    label = NOT_NEXT  # nothing to split
                if count >= 2:
                    a_end = rng.randint(1, count - 1)
                    a0, a1 = bounds[chunk_start], bounds[chunk_start + a_end]
                    rest = (a1, bounds[i + 1])
                elif label == IS_NEXT:
                    # a one-sentence chunk is split inside the sentence (above: why)
                    a_end, a0 = 1, bounds[i]
                    a1 = a0 + rng.randint(1, bounds[i + 1] - a0 - 1)
                    rest = (a1, bounds[i + 1])
                else:
                    a_end, a0, a1 = 1, bounds[i], bounds[i + 1]
                    rest = (a1, a1)
                if label == IS_NEXT:
                    b0, b1 = rest
                else:
                    b0, b1 = self._random_span(k, target - (a1 - a0), rng)
                    i -= count - a_end  # give the unused sentences back
                fa, ba, fb, bb = truncation(a1 - a0, b1 - b0, max_tokens, rng)
                a0, a1, b0, b1 = a0 + fa, a1 - ba, b0 + fb, b1 - bb
                if a1 > a0 and b1 > b0:
                    out.append((a0, a1, b0, b1, label))
                chunk_start, length, target = i + 1, 0, max_tokens
            i += 1

    def _random_span(self, k: int, target: int, rng: random.Random) -> tuple[int, int]:
        """Whole sentences of a random other document from a random sentence on, until they
        reach `target` tokens (at least one sentence)."""
        store = self.store
        other = rng.randrange(len(self.docs) - 1)
        other += other >= k  # any document but this one
        doc = int(self.docs[other])
        first, end = int(store.documents[doc]), int(store.documents[doc + 1])
        start = first + rng.randrange(end - first)
        begin = int(store.sentences[start])
        ends = store.sentences[start + 1 : end + 1]
        last = min(int(np.searchsorted(ends, begin + target)), len(ends) - 1)
        return begin, int(ends[last])


def truncation(a: int, b: int, max_tokens: int, rng: random.Random) -> tuple[int, int, int, int]:
    """(front, back) trims of segments of lengths a and b so they fit `max_tokens`, as BERT's
    `truncate_seq_pair` draws them: one coin per trimmed token, front or back, from the longer
    segment (B on ties). Which segment each trim hits depends only on the lengths (the longer
    down to the shorter, then B and A in turn), so the draws are made in one go and counted."""
    excess = a + b - max_tokens
    if excess <= 0:
        return 0, 0, 0, 0
    fronts = [rng.random() < 0.5 for _ in range(excess)]
    lead = min(excess, abs(a - b))
    a_draws = (fronts[:lead] if a > b else []) + fronts[lead + 1 :: 2]
    b_draws = ([] if a > b else fronts[:lead]) + fronts[lead::2]
    front_a, front_b = sum(a_draws), sum(b_draws)
    return front_a, len(a_draws) - front_a, front_b, len(b_draws) - front_b


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic): a fast hash."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def example_keys(block_key: int, count: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        counter = np.uint64(block_key) + (np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN)
    return mix64(counter)


class Cursor:
    """Reads a stream's pairs from a position on, batch by batch, across blocks and passes."""

    def __init__(self, stream: PairStream, position: Position):
        self.stream = stream
        self.pass_index, self.block_index, self.offset = position
        self.rows, self.keys = stream.block(self.pass_index, self.block_index)
        self._pairs_this_pass = 0
        self._whole_pass = position[1:] == (0, 0)  # counted from the pass's start

    @property
    def position(self) -> Position:
        return self.pass_index, self.block_index, self.offset

    def take(self, n: int, one_pass: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The next `n` pairs and their keys (fewer only with `one_pass`, at the pass's end)."""
        rows, keys, need = [], [], n
        while need:
            if self.offset >= len(self.rows):
                if not self._next_block(one_pass):
                    break
                continue
            piece = slice(self.offset, self.offset + need)
            rows.append(self.rows[piece])
            keys.append(self.keys[piece])
            taken = len(rows[-1])
            self.offset += taken
            self._pairs_this_pass += taken
            need -= taken
        if not rows:
            return np.zeros((0, 5), np.int64), np.zeros(0, np.uint64)
        return np.concatenate(rows), np.concatenate(keys)

    def _next_block(self, one_pass: bool) -> bool:
        stream = self.stream
        if self.block_index + 1 < stream.blocks(self.pass_index):
            self.block_index += 1
        else:
            if one_pass:
                return False
            if self._pairs_this_pass == 0 and self._whole_pass:  # it would loop forever
                raise DataError(
                    f"the corpus yields no pre-training pairs at seq_len {stream.seq_len}: its "
                    "documents have no tokens; use a corpus with text"
                )
            self.pass_index, self.block_index = self.pass_index + 1, 0
            self._pairs_this_pass, self._whole_pass = 0, True
        self.rows, self.keys = stream.block(self.pass_index, self.block_index)
        self.offset = 0
        return True
