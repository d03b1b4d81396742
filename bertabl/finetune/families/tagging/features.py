"""Feature-based CoNLL-2003 NER, the BERT paper's Table 7 ablation.

The pre-trained encoder is frozen: its hidden states are computed once per (checkpoint, dataset)
and cached, and only a randomly initialised 2-layer BiLSTM + linear classifier are trained on
one of six feature choices. Hidden-state stacks are [layers + 1, seq, hidden]: index 0 is the
embedding layer's output, 1..L the Transformer layers'. "Weighted Sum All 12 Layers" mixes the
12 Transformer layers, hidden_states[1:], not the embeddings: the paper counts 12 layers.
The weighted sums are an ELMo-style scalar mix (softmax weights times a learned gamma).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import AutoConfig, AutoModel, BertModel

from bertabl.finetune.families.tagging.encoding import IGNORE, LABELS
from bertabl.trial.finetune import FEATURE_MODES as MODES

_WEIGHTS = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
_CACHE_FORMAT = 1  # bump when the cache file layout changes, so stale files are not read


def layer_indices(mode: str, num_layers: int) -> list[int]:
    """Indices into a [num_layers + 1, ...] hidden-state stack that `mode` reads."""
    if mode not in MODES:
        raise ValueError(f"unknown feature mode {mode!r}; expected one of {', '.join(MODES)}")
    if num_layers < 4 and mode in ("weighted_sum_last_four", "concat_last_four"):
        raise ValueError(f"{mode} needs at least 4 Transformer layers, the model has {num_layers}")
    last = num_layers
    return {
        "embeddings": [0],
        "second_to_last_hidden": [last - 1],
        "last_hidden": [last],
        "weighted_sum_last_four": list(range(last - 3, last + 1)),
        "concat_last_four": list(range(last - 3, last + 1)),
        "weighted_sum_all": list(range(1, last + 1)),
    }[mode]


def feature_width(mode: str, hidden: int) -> int:
    """Width of the features `mode` feeds the BiLSTM."""
    return 4 * hidden if mode == "concat_last_four" else hidden


class ScalarMix(nn.Module):
    """ELMo's gamma * sum_i softmax(w)_i * h_i; w = 0 and gamma = 1 at init (a plain mean)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """layers: [..., n, seq, hidden] -> [..., seq, hidden]."""
        w = torch.softmax(self.weights, dim=0).view(-1, 1, 1)
        return self.gamma * (w * layers).sum(dim=-3)


class FeatureTagger(nn.Module):
    """Frozen-feature tagger: feature choice -> 2-layer BiLSTM -> linear at first sub-tokens.

    The BiLSTM runs over all sub-tokens (the features are per sub-token); the classifier reads
    its output at each word's first sub-token, as the paper's fine-tuned tagger does.
    """

    def __init__(
        self,
        mode: str,
        num_layers: int,
        hidden: int,
        lstm_hidden: int,
        num_labels: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.mode, self.layers = mode, layer_indices(mode, num_layers)
        self.num_layers = num_layers
        self.mix = ScalarMix(len(self.layers)) if mode.startswith("weighted_sum") else None
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            feature_width(mode, hidden),
            lstm_hidden,
            num_layers=2,
            bidirectional=True,
            batch_first=True,
            dropout=dropout,
        )  # between the two LSTM layers
        self.classifier = nn.Linear(2 * lstm_hidden, num_labels)

    def features(self, chosen: torch.Tensor) -> torch.Tensor:
        """[batch, len(self.layers), seq, hidden], the stack's layers this mode reads in
        `self.layers` order (what `collate` gives for them) -> [batch, seq, feature_width]."""
        if chosen.shape[1] != len(self.layers):
            raise ValueError(
                f"{self.mode} reads hidden-state layers {self.layers}: expected "
                f"{len(self.layers)} of them, got {chosen.shape[1]}"
            )
        if self.mix is not None:
            return self.mix(chosen)
        if self.mode == "concat_last_four":
            return torch.cat(chosen.unbind(dim=1), dim=-1)
        return chosen[:, 0]

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor,
        first: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [batch, words, labels]; hidden_states: the chosen layers (see `features`);
        mask [batch, seq] (1 = real token, a prefix); first [batch, words]: each word's first
        sub-token position, -1 for none (padding or truncated words; their logits are 0);
        lengths: mask's row sums on the host (None: computed, a device->host copy on a GPU).
        The BiLSTM runs in fp32 with autocast off, as heads._run_bilstm says why."""
        if lengths is None:
            lengths = mask.sum(dim=1).cpu()
        with torch.autocast(hidden_states.device.type, enabled=False):
            x = self.dropout(self.features(hidden_states.float()))
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        at = first.clamp(min=0).unsqueeze(-1).expand(-1, -1, out.shape[-1])
        logits = self.classifier(self.dropout(out.gather(1, at)))
        return logits * (first >= 0).unsqueeze(-1)

    @staticmethod
    def loss(logits: torch.Tensor, word_labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over words; -100 labels (padding, truncated words) are ignored."""
        return nn.functional.cross_entropy(
            logits.flatten(0, 1), word_labels.flatten(), ignore_index=IGNORE
        )


def word_positions(feature: dict) -> tuple[list[int], list[int]]:
    """(first sub-token position, label) for each word of an `ner.encode` feature; -1/-100 for
    words with no sub-token."""
    first, labels = [-1] * feature["num_words"], [IGNORE] * feature["num_words"]
    for position, w in enumerate(feature["word_ids"]):
        if w is not None and first[w] < 0:
            first[w], labels[w] = position, feature["labels"][position]
    return first, labels


def collate(
    features: Sequence[dict], states: Sequence[torch.Tensor], layers: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Batch `ner.encode` features with the `layers` (a FeatureTagger's `layers`) of their
    hidden-state stacks: only what the tagger reads is copied, and moved to the device (one
    layer of a BERT-Base stack's 13 for most modes)."""
    longest = max(s.shape[1] for s in states)
    most_words = max(max(f["num_words"] for f in features), 1)
    hidden = states[0].new_zeros((len(states), len(layers), longest, states[0].shape[2]))
    mask = torch.zeros(len(states), longest, dtype=torch.long)
    first = torch.full((len(states), most_words), -1, dtype=torch.long)
    labels = torch.full((len(states), most_words), IGNORE, dtype=torch.long)
    for i, (f, s) in enumerate(zip(features, states, strict=True)):
        hidden[i, :, : s.shape[1]] = s[list(layers)]
        mask[i, : s.shape[1]] = 1
        f_first, f_labels = word_positions(f)
        first[i, : len(f_first)] = torch.tensor(f_first, dtype=torch.long)
        labels[i, : len(f_labels)] = torch.tensor(f_labels, dtype=torch.long)
    lengths = torch.tensor([s.shape[1] for s in states], dtype=torch.long)  # stays on the host
    return {
        "hidden_states": hidden,
        "mask": mask,
        "first": first,
        "labels": labels,
        "lengths": lengths,
    }


def predict_tags(
    logits: torch.Tensor, first: torch.Tensor, features: Sequence[dict]
) -> list[list[str]]:
    """Per-word tags from `FeatureTagger` logits; words with no sub-token (truncated) get "O"."""
    ids, firsts = logits.argmax(dim=-1).tolist(), first.tolist()
    return [
        [LABELS[p] if k >= 0 else "O" for p, k in zip(row, ks, strict=True)][: f["num_words"]]
        for row, ks, f in zip(ids, firsts, features, strict=True)
    ]


@torch.no_grad()
def _extract_flat(
    model: nn.Module,
    encoded: Sequence[dict],
    batch_size: int,
    device: str | torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, list[int]]:
    """([layers + 1, total tokens, hidden], per-sentence lengths): one buffer, not one tensor a
    sentence, so the cache is saved without a second copy (eng.train is ~11 GB in float32)."""
    model.eval().to(device)
    lengths = [len(e["input_ids"]) for e in encoded]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    flat: torch.Tensor | None = None
    order = sorted(range(len(encoded)), key=lambda i: lengths[i])
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if _takes(model, k)]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        longest = max(lengths[i] for i in idx)
        batch = {}
        for key in keys:
            rows = [list(encoded[i][key]) + [0] * (longest - lengths[i]) for i in idx]
            batch[key] = torch.tensor(rows, dtype=torch.long, device=device)
        result = model(**batch, output_hidden_states=True)
        stack = torch.stack(result.hidden_states, dim=1).to("cpu", dtype)  # [b, L+1, seq, h]
        if flat is None:
            flat = stack.new_empty((stack.shape[1], offsets[-1], stack.shape[3]))
        for row, i in enumerate(idx):
            flat[:, offsets[i] : offsets[i + 1]] = stack[row, :, : lengths[i]]
    if flat is None:
        raise ValueError("extract_hidden_states: no sentences")
    return flat, lengths


def _takes(model: nn.Module, argument: str) -> bool:
    """Whether the model's forward takes `argument` (DistilBERT's takes no token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    return argument in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def extract_hidden_states(
    model: nn.Module,
    encoded: Sequence[dict],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """All layers' hidden states per sentence, [layers + 1, len, hidden] on CPU, in input order.

    Runs in eval mode (no dropout: features must be deterministic) and without autograd, so the
    encoder is never trained. Batches are length-sorted to cut padding; padding does not change
    the real positions' states (it is masked out of attention).
    """
    flat, lengths = _extract_flat(model, encoded, batch_size, device, dtype)
    return list(flat.split(lengths, dim=1))


def _checkpoint_hash(model_dir: Path) -> str:
    """Hash of the config and weight files: exactly what decides the hidden states. Other files
    (tokenizer, optimizer state, a cache kept inside the folder) must not invalidate the cache."""
    files = sorted(
        p
        for p in Path(model_dir).iterdir()
        if p.is_file() and (p.name == "config.json" or p.name.endswith(_WEIGHTS))
    )
    if not any(p.name.endswith(_WEIGHTS) for p in files):
        raise FileNotFoundError(
            f"{model_dir}: no model weights (*.safetensors / *.bin); expected "
            "a save_pretrained checkpoint folder"
        )
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _data_hash(encoded: Sequence[dict]) -> str:
    keys = ("input_ids", "token_type_ids", "attention_mask")
    text = json.dumps([[list(map(int, e[k])) for k in keys] for e in encoded])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_encoder(model_dir: Path) -> nn.Module:
    # BertModel.from_pretrained also reads BertForPreTraining / BertForMaskedLM checkpoints (the
    # "bert." prefix is stripped); no pooler: features never use it and MLM-only ones lack it.
    # Other BERT-family encoders (RoBERTa, ELECTRA, DistilBERT) load as their AutoModel.
    if AutoConfig.from_pretrained(model_dir).model_type != "bert":
        return AutoModel.from_pretrained(model_dir)
    return BertModel.from_pretrained(model_dir, add_pooling_layer=False)


def cached_hidden_states(
    model_dir: Path,
    encoded: Sequence[dict],
    cache_dir: Path,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    load_model: Callable[[Path], nn.Module] = _load_encoder,
) -> list[torch.Tensor]:
    """`extract_hidden_states`, saved to / loaded from `cache_dir` so the six feature variants
    (and every restart) share one encoder pass. Keyed by checkpoint hash + data hash + dtype.

    Stored flat ([layers + 1, total_tokens, hidden] + lengths) and memory-mapped on load, so
    pages are read as used. At BERT-Base scale (13 x 768) and max_seq_len 128 that is 2.8 GB
    for eng.testa and 11 GB for eng.train in float32; dtype=torch.float16 halves it.
    """
    if not encoded:
        raise ValueError("cached_hidden_states: no sentences to encode")
    key = f"{_checkpoint_hash(model_dir)}-{_data_hash(encoded)}-{str(dtype).split('.')[-1]}"
    path = Path(cache_dir) / f"hidden-v{_CACHE_FORMAT}-{key}.pt"
    if path.is_file():
        saved = torch.load(path, mmap=True, weights_only=True)
        return list(saved["flat"].split(saved["lengths"].tolist(), dim=1))
    flat, lengths = _extract_flat(load_model(Path(model_dir)), encoded, batch_size, device, dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: a crash or a concurrent writer never leaves a half-written cache file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({"flat": flat, "lengths": torch.tensor(lengths)}, tmp)
    tmp.replace(path)
    return list(flat.split(lengths, dim=1))
