"""Pre-training corpora as documents of sentences (document boundaries matter for NSP).

Sources:
- "synthetic": the embedded generated corpus (bertabl/data/synthetic.py);
- a path to a text file or a folder of `.txt` files, in one of three layouts:
  - `bert`: BERT's pre-training format, one sentence per line, a blank line between documents;
  - `paragraphs`: each file is one document, blank-line-separated paragraphs are its segments
    (books such as the Project Gutenberg texts; a paragraph's lines are joined);
  - `wikitext`: raw WikiText (`wiki.train.raw`): a ` = Title = ` line starts an article, section
    headings (` = = Section = = `) are dropped, every other non-empty line is a paragraph;
- "hub:<dataset>": a Hugging Face dataset (needs the network), rows made documents as
  `data.corpus_hub` says (one article a row for Wikipedia; n lines a document for BookCorpus).

Like tasks, a corpus has an identity (content hashes; in trial ids) and a location (paths; not).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bertabl.data import synthetic
from bertabl.data.tokenizer import TokenizerSource
from bertabl.errors import DataError
from bertabl.io import atomic_write
from bertabl.trial.data import DataRef

HUB = "hub:"


class CorpusSource(TokenizerSource, Protocol):
    """The `data` section's corpus keys (matrix/schema.py: DataSection)."""

    corpus: str
    corpus_format: str
    corpus_hub: Any  # HubCorpus
    synthetic: Any  # SyntheticData


def corpus_data(source: CorpusSource) -> DataRef:
    """The corpus and tokenizer a matrix's data section names, as its trials refer to them."""
    from bertabl.data.tokenizer import tokenizer_data

    tokenizer = tokenizer_data(source)
    if source.corpus.startswith(HUB):
        # No content hash without downloading it: the name and selection identify the data.
        identity = {"corpus": "hub", "name": source.corpus.removeprefix(HUB)}
        identity |= source.corpus_hub.model_dump(mode="json")
        location: dict[str, Any] = {}
    elif source.corpus == "synthetic":
        sizes = {"seed", "documents", "sentences_per_document"}
        identity = {"corpus": "synthetic", **source.synthetic.model_dump(include=sizes)}
        location = {}
    else:
        files = corpus_files(Path(source.corpus))
        digest = hashlib.sha256()
        for path in files:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        identity = {
            "corpus": "files",
            "format": source.corpus_format,
            "sha256": digest.hexdigest()[:16],
            "files": len(files),
        }
        location = {"files": [str(p) for p in files]}
    return DataRef(
        identity=identity | {"tokenizer": tokenizer.identity},
        location=location | {"tokenizer": tokenizer.location},
    )


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


def load_corpus(data: DataRef) -> list[list[str]]:
    """Documents, each a list of sentences/segments, of the corpus `data` (corpus_data) names."""
    identity = data.identity
    if identity["corpus"] == "synthetic":
        return synthetic.generate_corpus(
            identity["seed"], identity["documents"], identity["sentences_per_document"]
        )
    if identity["corpus"] == "hub":
        documents = _hub_documents(identity)
        where = f"hub:{identity['name']}"
    else:
        documents = []
        for name in data.location["files"]:
            text = Path(name).read_text(encoding="utf-8-sig")  # universal newlines: CRLF is fine
            documents += READERS[identity["format"]](text)
        where = data.location["files"][0]
    documents = [d for d in documents if d]
    if len(documents) < 2:
        raise DataError(
            f"{where}: the corpus has {len(documents)} document(s); next-sentence pairs need "
            "at least two (separate documents with a blank line in the bert format, give "
            "several files in the paragraphs format, or several ' = Title = ' articles)"
        )
    return documents


def _bert_documents(text: str) -> list[list[str]]:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    return [[s.strip() for s in b.splitlines() if s.strip()] for b in blocks]


def _paragraph_documents(text: str) -> list[list[str]]:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    return [[" ".join(line.strip() for line in b.splitlines()) for b in blocks]]


def _wikitext_documents(text: str) -> list[list[str]]:
    documents: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if _WIKI_TITLE.fullmatch(line):
            documents.append([])
        elif not _WIKI_HEADING.fullmatch(line):
            if not documents:
                documents.append([])
            documents[-1].append(line)
    return documents


_WIKI_TITLE = re.compile(r"= [^=].*[^=] =")
_WIKI_HEADING = re.compile(r"(= )+.*( =)+")
READERS = {
    "bert": _bert_documents,
    "paragraphs": _paragraph_documents,
    "wikitext": _wikitext_documents,
}


def _hub_documents(identity: dict[str, Any]) -> list[list[str]]:
    """Rows of a Hub dataset as documents (needs the network, or the datasets cache)."""
    import datasets

    name = identity["name"]
    try:
        rows = datasets.load_dataset(name, identity["config"], split=identity["split"])
    except Exception as err:  # datasets raises many types for a missing name/config/network
        raise DataError(
            f"hub:{name}: could not load the dataset ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); it needs the network, and "
            "data.corpus_hub.config / split must exist"
        ) from None
    column = identity["text_column"]
    if column not in rows.column_names:
        raise DataError(
            f"hub:{name}: no column '{column}' (data.corpus_hub.text_column); columns: "
            f"{', '.join(rows.column_names)}"
        )
    texts = rows[column]
    per_document, limit = identity["rows_per_document"], identity["max_documents"]
    if per_document == 0:
        documents = [[p.strip() for p in t.splitlines() if p.strip()] for t in texts]
    else:
        documents = [
            [t.strip() for t in texts[i : i + per_document] if t.strip()]
            for i in range(0, len(texts), per_document)
        ]
    return documents[:limit] if limit else documents


def tokenized_corpus(data: DataRef, tokenizer, cache_dir: Path | None) -> list[list[list[int]]]:
    """The corpus `data` names, tokenised (token-id lists per document), cached by content hash.

    Every trial pre-training on the same corpus with the same tokenizer shares one cached copy
    (in the run directory), so a matrix of many variants tokenises its corpus once.
    """
    if cache_dir is None:
        return _tokenize(tokenizer, load_corpus(data))
    key = json.dumps({"corpus": data.identity, "vocab": _vocab_digest(tokenizer)}, sort_keys=True)
    path = Path(cache_dir) / f"corpus-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return _unflatten(stored["tokens"], stored["sentence_ends"], stored["document_ends"])
    tokenized = _tokenize(tokenizer, load_corpus(data))
    sentences = [s for d in tokenized for s in d]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        tokens=np.fromiter((t for s in sentences for t in s), dtype=np.int32),
        sentence_ends=np.cumsum([len(s) for s in sentences], dtype=np.int64),
        document_ends=np.cumsum([len(d) for d in tokenized], dtype=np.int64),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())  # concurrent trials: last rename wins, same content
    return tokenized


def _tokenize(tokenizer, documents: list[list[str]]) -> list[list[list[int]]]:
    return [tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in documents]


def _unflatten(tokens, sentence_ends, document_ends) -> list[list[list[int]]]:
    flat = tokens.tolist()
    starts = [0, *sentence_ends[:-1].tolist()]
    sentences = [flat[a:b] for a, b in zip(starts, sentence_ends.tolist(), strict=True)]
    doc_starts = [0, *document_ends[:-1].tolist()]
    return [sentences[a:b] for a, b in zip(doc_starts, document_ends.tolist(), strict=True)]


def _vocab_digest(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    settings = [type(tokenizer).__name__, getattr(tokenizer, "do_lower_case", None)]
    return hashlib.sha256(json.dumps([settings, vocab]).encode()).hexdigest()[:16]
