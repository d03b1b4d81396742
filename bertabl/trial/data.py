"""How a trial refers to its data (corpus, tokenizer, a task's splits)."""

from __future__ import annotations

from typing import Any

from bertabl.trial.strict import Strict


class DataRef(Strict):
    """A data source as a trial sees it: `identity` (what decides the data: content hashes,
    names, seeds and sizes; part of the trial id) and `location` (where it lives on this
    machine: paths; not part of the id, so the same data elsewhere is the same trial)."""

    identity: Any
    location: Any
