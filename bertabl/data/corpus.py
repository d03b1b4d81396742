"""Pre-training corpora as documents of sentences (document boundaries matter for NSP).

Sources:
- "synthetic": the embedded generated corpus (bertabl/data/synthetic.py);
- a path to a text file or a folder of `.txt` files, in one of two layouts:
  - `bert`: BERT's pre-training format, one sentence per line, a blank line between documents;
  - `paragraphs`: each file is one document, blank-line-separated paragraphs are its segments
    (books such as the Project Gutenberg texts; a paragraph's lines are joined).

Like tasks, a corpus has an identity (content hashes; in trial ids) and a location (paths; not).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from bertabl.data import synthetic
from bertabl.errors import DataError


def corpus_data(data_config: dict[str, Any]) -> dict[str, Any]:
    """{"identity", "location"} of the corpus and tokenizer a matrix's data section names."""
    from bertabl.data.tokenizer import tokenizer_data

    tokenizer = tokenizer_data(data_config)
    if data_config["corpus"] == "synthetic":
        syn = data_config["synthetic"]
        identity = {
            "corpus": "synthetic",
            "seed": syn["seed"],
            "documents": syn["documents"],
            "sentences_per_document": syn["sentences_per_document"],
        }
        location: dict[str, Any] = {}
    else:
        files = corpus_files(Path(data_config["corpus"]))
        digest = hashlib.sha256()
        for path in files:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        identity = {
            "corpus": "files",
            "format": data_config["corpus_format"],
            "sha256": digest.hexdigest()[:16],
            "files": len(files),
        }
        location = {"files": [str(p) for p in files]}
    return {
        "identity": identity | {"tokenizer": tokenizer["identity"]},
        "location": location | {"tokenizer": tokenizer["location"]},
    }


def corpus_files(path: Path) -> list[Path]:
    """The corpus's text files: `path` itself, or the `.txt` files below it (sorted)."""
    path = path.resolve()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if files:
            return files
        raise DataError(f"{path}: no .txt files in this folder; the corpus needs text files")
    raise DataError(
        f"{path}: not found; give a text file or a folder of .txt files (or 'synthetic')"
    )


def load_corpus(data: dict[str, Any]) -> list[list[str]]:
    """Documents, each a list of sentences/segments, of the corpus `data` (corpus_data) names."""
    identity = data["identity"]
    if identity["corpus"] == "synthetic":
        return synthetic.generate_corpus(
            identity["seed"], identity["documents"], identity["sentences_per_document"]
        )
    documents: list[list[str]] = []
    for name in data["location"]["files"]:
        text = Path(name).read_text(encoding="utf-8-sig")  # universal newlines: CRLF is fine
        blocks = [b for b in text.split("\n\n") if b.strip()]
        if identity["format"] == "bert":
            documents += [[s.strip() for s in b.splitlines() if s.strip()] for b in blocks]
        else:
            documents.append([" ".join(line.strip() for line in b.splitlines()) for b in blocks])
    documents = [d for d in documents if d]
    if len(documents) < 2:
        raise DataError(
            f"{data['location']['files'][0]}: the corpus has {len(documents)} document(s); "
            "next-sentence pairs need at least two (separate documents with a blank line in the "
            "bert format, or give several files in the paragraphs format)"
        )
    return documents
