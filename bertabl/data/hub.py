"""Datasets from the Hugging Face Hub (the one data path that needs the network)."""

from __future__ import annotations

from bertabl.errors import DataError


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
