"""Tokenizers: a WordPiece `BertTokenizerFast` built from a vocabulary file.

"synthetic" writes a vocab file from the synthetic lexicon; otherwise `data.tokenizer` is the path
of a WordPiece `vocab.txt` (e.g. BERT's `bert-base-uncased-vocab.txt`). Both go through the same
class, so every later step is the same for both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from transformers import BertTokenizerFast

from bertabl.data import synthetic
from bertabl.errors import DataError


def tokenizer_data(data_config: dict[str, Any]) -> dict[str, Any]:
    """{"identity", "location"} of the tokenizer a matrix's data section names."""
    if data_config["tokenizer"] == "synthetic":
        return {"identity": "synthetic", "location": None}
    path = Path(data_config["tokenizer"]).resolve()
    if not path.is_file():
        raise DataError(f"{path}: vocabulary file not found; give a WordPiece vocab.txt path")
    identity = {
        "vocab_sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        "lowercase": data_config["lowercase"],
    }
    return {"identity": identity, "location": str(path)}


def build_tokenizer(data: dict[str, Any], workdir: Path) -> BertTokenizerFast:
    """The tokenizer `data` (corpus.corpus_data) names; a synthetic vocab is written to workdir."""
    identity, location = data["identity"]["tokenizer"], data["location"]["tokenizer"]
    if identity == "synthetic":
        workdir.mkdir(parents=True, exist_ok=True)
        vocab_file = workdir / "vocab.txt"
        vocab_file.write_text("\n".join(synthetic.lexicon().vocab()) + "\n", encoding="utf-8")
        return BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    return BertTokenizerFast(vocab=location, do_lower_case=identity["lowercase"])


def vocab_size(data_config: dict[str, Any]) -> int:
    """Vocabulary size of the tokenizer a matrix's data section names, without building it."""
    if data_config["tokenizer"] == "synthetic":
        return len(synthetic.lexicon().vocab())
    path = Path(data_config["tokenizer"])
    if not path.is_file():
        raise DataError(f"{path}: vocabulary file not found; give a WordPiece vocab.txt path")
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line)
