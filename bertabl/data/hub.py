"""Datasets from the Hugging Face Hub (the one data path that needs the network)."""

from __future__ import annotations

from bertabl.errors import DataError


def hub_model(name: str, revision: str | None) -> str:
    """A local folder with the Hub model `name` at `revision` (downloaded once into the Hugging
    Face cache; offline, the cached copy), or a DataError saying what to do."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, revision=revision)
    except Exception as err:  # network, auth and missing-repo errors have many types
        raise DataError(
            f"could not load the model hub:{name}@{revision} from the Hugging Face Hub ({err}); "
            "it needs the network once (or the Hugging Face cache); offline, give a folder "
            "written by save_pretrained instead"
        ) from None


def load_hub(name: str, config: str | None, split: str):
    """`datasets.load_dataset(name, config, split=split)`, or a DataError saying what to do."""
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the datasets library raises many types for "not reachable"
        raise DataError(
            f"could not load {name}{'/' + config if config else ''} ({split}) from the Hugging "
            f"Face Hub: {err}; offline, use the local files (data.glue_dir / data.squad_dir)"
        ) from None
