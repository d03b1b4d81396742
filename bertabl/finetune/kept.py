"""A fine-tuned model's final weights, kept in its trial directory: what test splits are scored
with after selection, and what `bertabl export` writes out.

Kept as the trial trained it (word embeddings compacted to the rows its data reads, see
vocab.py): the safetensors state dict plus the kept vocabulary ids, so loading rebuilds exactly
the evaluated model (the EMA weights when the recipe averages). `export` expands the embeddings
back to the full vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bertabl.finetune.vocab import CompactEmbedding, compact_word_embeddings
from bertabl.trial.files import FINAL_WEIGHTS

WEIGHTS = "model.safetensors"
KEPT_IDS = "__bertabl_kept_vocabulary_ids__"  # a tensor in the same file


def kept_folder(trial_dir: Path) -> Path:
    return Path(trial_dir) / FINAL_WEIGHTS


def save_final(model: torch.nn.Module, trial_dir: Path) -> Path:
    """Write the model's weights (as they are now) to `trial_dir/final/`, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for module in model.modules():
        if isinstance(module, CompactEmbedding):
            state[KEPT_IDS] = (module.lookup >= 0).nonzero().squeeze(1).cpu()
            break
    folder = kept_folder(trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{WEIGHTS}.partial"
    save_file(dict(_untied(state)), str(partial))
    partial.replace(folder / WEIGHTS)
    return folder / WEIGHTS


def load_final(model: torch.nn.Module, trial_dir: Path) -> torch.nn.Module:
    """`model` (freshly built from the pre-trained checkpoint as the trial built it) with the
    kept final weights loaded, its word embeddings whole again: the rows the fine-tune read
    are its, the others keep their pre-trained values (text the trial never saw, e.g. a test
    split's words, reads those; a full-embedding fine-tune would only have weight-decayed
    them)."""
    state = load_file(str(kept_folder(trial_dir) / WEIGHTS))
    kept = state.pop(KEPT_IDS, None)
    if kept is None:
        model.load_state_dict(state)
        return model
    path, full = _word_embeddings(model)
    pretrained = full.weight.detach().clone()
    compact_word_embeddings(model, set(kept.tolist()))
    model.load_state_dict(state)
    parent = model.get_submodule(path.rsplit(".", 1)[0])
    compact = parent.word_embeddings
    with torch.no_grad():
        pretrained[kept.to(pretrained.device)] = compact.weight.detach().to(pretrained.device)
        full.weight.copy_(pretrained)
    parent.word_embeddings = full
    return model


def _word_embeddings(model: torch.nn.Module) -> tuple[str, torch.nn.Embedding]:
    for name, module in model.named_modules():
        if name.endswith("embeddings.word_embeddings") and isinstance(module, torch.nn.Embedding):
            return name, module
    raise ValueError("the model has no word embeddings to expand")


def _untied(state: dict[str, torch.Tensor]):
    """safetensors refuses tensors that share memory (tied weights): store copies."""
    seen: dict[int, str] = {}
    for name, tensor in state.items():
        pointer = tensor.data_ptr()
        yield name, tensor.clone() if pointer in seen else tensor
        seen.setdefault(pointer, name)
