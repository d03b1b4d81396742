"""Pre-training corpora as documents of sentences (document boundaries matter for NSP)."""

from __future__ import annotations

from bertabl.data import synthetic


def load_corpus(identity: dict) -> list[list[str]]:
    """Documents, each a list of sentences, of the corpus a `corpus_identity` names."""
    return synthetic.generate_corpus(
        identity["seed"], identity["documents"], identity["sentences_per_document"]
    )


def corpus_identity(data_config: dict) -> dict:
    """The part of the data config that determines the corpus and vocab (goes into trial ids)."""
    syn = data_config["synthetic"]
    return {
        "corpus": data_config["corpus"],
        "tokenizer": data_config["tokenizer"],
        "seed": syn["seed"],
        "documents": syn["documents"],
        "sentences_per_document": syn["sentences_per_document"],
    }
