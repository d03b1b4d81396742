"""Tokenizers: a WordPiece `BertTokenizerFast` built from a vocabulary file.

The synthetic language gets a vocab file written from its lexicon, so the same class and code path
serve it and the real BERT vocab (`bert-base-uncased-vocab.txt`).
"""

from __future__ import annotations

from pathlib import Path

from transformers import BertTokenizerFast

from bertabl.data import synthetic


def build_tokenizer(identity: dict, workdir: Path) -> BertTokenizerFast:
    """The tokenizer a `corpus_identity` names; writes its vocab file under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    vocab_file = workdir / "vocab.txt"
    vocab_file.write_text("\n".join(synthetic.lexicon().vocab()) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)


def vocab_size(data_config: dict) -> int:
    """Vocabulary size of the tokenizer the data config names, without building it."""
    return len(synthetic.lexicon().vocab())
