"""Fine-tune only the word-embedding rows a trial can touch: the tokens in its data.

A small BERT's parameters are mostly its word embeddings (30,522 x 128 = 3.9M of a 2 x 128
model's 4.4M), and a fine-tuning run sees a fraction of the vocabulary (SST-2: ~30%). Every
step, the backward pass still writes a dense 30,522-row gradient and AdamW updates every row.
For a row whose token never appears in the data that update is pure weight decay (its
gradient is always zero, so its Adam moments stay zero), and the row is never read: not in
training, not in evaluation. So the trial trains a compact embedding of the rows it can read,
with a lookup from vocabulary ids to compact rows inside the module: the collators, the data
and the model's inputs keep their vocabulary ids.

Equivalence: each kept row gets the gradient, moments and update it would get in the full
embedding (AdamW is element-wise; the global gradient norm for clipping sums the same nonzero
terms), so training and evaluation compute the same numbers up to float summation order.
The skipped rows' values are not needed by anything a fine-tuning trial outputs (its metrics);
the trial writes no fine-tuned model. `tests/finetune/test_vocab.py` checks the equivalence
against the full embedding.

torch's sparse embedding gradients would avoid the dense gradient too, but the fused AdamW
does not take sparse gradients, and weight decay would still touch every row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


class CompactEmbedding(nn.Module):
    """An `nn.Embedding` restricted to `keep` (sorted vocabulary ids, a CPU tensor), looked up
    by vocabulary id.

    `weight` keeps its name, so parameter groups (weight decay, layer-wise learning rates) and
    checkpoints treat it as the word embeddings. An id outside `keep` is a bug (the kept set
    is built from every split the trial reads) and fails as an out-of-range index.
    """

    def __init__(self, full: nn.Embedding, keep: torch.Tensor):
        super().__init__()
        self.num_embeddings = full.num_embeddings  # the vocabulary size, as nn.Embedding's
        device = full.weight.device
        self.weight = nn.Parameter(full.weight.detach()[keep.to(device)].clone())
        lookup = torch.full((full.num_embeddings,), -1, dtype=torch.long)
        lookup[keep] = torch.arange(len(keep))
        # Rebuilt from the data on resume (the same data gives the same lookup): not saved.
        self.register_buffer("lookup", lookup.to(device), persistent=False)
        # nn.Embedding gives the padding row no gradient; so does the compact one.
        pad = full.padding_idx
        self.padding_idx = None if pad is None else int(lookup[pad])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(self.lookup[input_ids], self.weight, self.padding_idx)


def token_ids(items: Iterable[dict]) -> set[int]:
    """Every vocabulary id in the `input_ids` of encoded examples (flat or per candidate)."""
    seen: set[int] = set()
    for item in items:
        ids = item["input_ids"]
        if ids and isinstance(ids[0], list):  # multiple choice: one list per candidate
            for candidate in ids:
                seen.update(candidate)
        else:
            seen.update(ids)
    return seen


def readable_ids(splits: Iterable[Iterable[dict]], tokenizer) -> set[int]:
    """The vocabulary ids a trial can read: every id in its encoded splits, and the tokenizer's
    special tokens."""
    return set().union(*map(token_ids, splits), tokenizer.all_special_ids)


def compact_word_embeddings(model: nn.Module, ids: set[int]) -> int:
    """Replace the model's word embeddings by a CompactEmbedding of `ids` (the padding row is
    always kept); returns the rows kept, or 0 when the model has no word embeddings (a
    feature-based tagger) or `ids` already cover the vocabulary."""
    for name, module in model.named_modules():  # a shared encoder is listed once
        if name.endswith("embeddings.word_embeddings") and isinstance(module, nn.Embedding):
            if module.padding_idx is not None:
                ids = ids | {module.padding_idx}
            if len(ids) >= module.num_embeddings:
                return 0
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            keep = torch.tensor(sorted(ids), dtype=torch.long)
            parent.word_embeddings = CompactEmbedding(module, keep)
            return len(keep)
    return 0


Collate = Callable[[list], dict[str, torch.Tensor]]


def checked_collate(collate: Collate, model: nn.Module) -> Collate:
    """`collate`, then a check on the host that every `input_ids` entry is a row the model's
    word embeddings can look up (a kept row of a compact embedding, or an id below the
    vocabulary size). An id outside would be a bug, but on a GPU the lookup would fail as a
    device-side assert, which leaves the CUDA context unusable for the rest of the worker
    process, and so for every later trial Tune runs in it; here it is one clear error."""
    embedding = next(
        (m for n, m in model.named_modules() if n.endswith("embeddings.word_embeddings")), None
    )
    if embedding is None:
        return collate
    if isinstance(embedding, CompactEmbedding):
        readable = embedding.lookup.cpu() >= 0
    else:
        readable = torch.ones(embedding.num_embeddings, dtype=torch.bool)

    def collate_checked(items: list) -> dict[str, torch.Tensor]:
        batch = collate(items)
        ids = batch["input_ids"].flatten()
        inside = (ids >= 0) & (ids < len(readable))
        ok = inside.clone()
        ok[inside] = readable[ids[inside]]
        if not bool(ok.all()):
            bad = int(ids[~ok][0])
            raise RuntimeError(
                f"token id {bad} in a batch is not a row of the model's word embeddings "
                f"({int(readable.sum())} readable rows of {len(readable)}; finetune/vocab.py): "
                "the collator produced an id that is not in the encoded data"
            )
        return batch

    return collate_checked
