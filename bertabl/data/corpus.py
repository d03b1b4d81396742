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
  `data.corpus_hub` says (one article a row for Wikipedia; n lines a document for BookCorpus);
  a `max_documents` prefix is streamed, not downloaded whole.
`data.corpora` lists several of these (the paper's BooksCorpus + Wikipedia), concatenated as
documents. Every source is read as a stream (readers.py): pre-training tokenises it into a token
store (token_store.py) and never holds the corpus in memory; `load_corpus` materialises it for
small corpora, tests and baselines.

Like tasks, a corpus has an identity (content hashes; in trial ids) and a location (paths; not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from bertabl.data import synthetic
from bertabl.data.fingerprints import file_sha256
from bertabl.data.readers import Piece, document_pieces, file_pieces, hub_pieces, hub_rows
from bertabl.data.tokenizer import TokenizerSource
from bertabl.errors import DataError
from bertabl.trial.data import DataRef

HUB = "hub:"


class CorpusEntry(Protocol):
    """One corpus: the `data` section's corpus keys, or one entry of `data.corpora`."""

    corpus: str
    corpus_format: str
    corpus_hub: Any  # HubCorpus


class CorpusSource(CorpusEntry, TokenizerSource, Protocol):
    """The `data` section's corpus keys (matrix/schema.py: DataSection)."""

    corpora: list[Any]  # CorpusEntry
    synthetic: Any  # SyntheticData


def corpus_data(source: CorpusSource) -> DataRef:
    """The corpus (or corpora, concatenated as documents) and tokenizer a matrix's data section
    names, as its trials refer to them."""
    from bertabl.data.tokenizer import tokenizer_data

    tokenizer = tokenizer_data(source)
    if len(source.corpora) > 1:
        parts = []
        for index, entry in enumerate(source.corpora):
            try:
                parts.append(_corpus(entry, source.synthetic))
            except DataError as err:
                raise DataError(f"data.corpora[{index}]: {err}") from None
        identity: dict[str, Any] = {"corpora": [i for i, _ in parts]}
        location: dict[str, Any] = {"corpora": [loc for _, loc in parts]}
    else:  # one corpus, however it was given, is the same data (and the same trial ids)
        entry = source.corpora[0] if source.corpora else source
        identity, location = _corpus(entry, source.synthetic)
    return DataRef(
        identity=identity | {"tokenizer": tokenizer.identity},
        location=location | {"tokenizer": tokenizer.location},
    )


def _corpus(entry: CorpusEntry, synthetic_sizes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if entry.corpus.startswith(HUB):
        # No content hash without downloading it: the name and selection identify the data.
        identity = {"corpus": "hub", "name": entry.corpus.removeprefix(HUB)}
        return identity | entry.corpus_hub.model_dump(mode="json"), {}
    if entry.corpus == "synthetic":
        sizes = {"seed", "documents", "sentences_per_document"}
        return {"corpus": "synthetic", **synthetic_sizes.model_dump(include=sizes)}, {}
    files = corpus_files(Path(entry.corpus))
    digest = hashlib.sha256()
    for path in files:
        digest.update(file_sha256(path))  # streamed: a dump can be larger than memory
    identity = {
        "corpus": "files",
        "format": entry.corpus_format,
        "sha256": digest.hexdigest()[:16],
        "files": len(files),
    }
    return identity, {"files": [str(p) for p in files]}


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


def corpus_sources(data: DataRef) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(identity, location) of each corpus `data` concatenates, in order (one unless
    `data.corpora` lists several)."""
    identity, location = data.identity, data.location
    if "corpora" in identity:
        return list(zip(identity["corpora"], location["corpora"], strict=True))
    drop = {"tokenizer"}
    return [
        (
            {k: v for k, v in identity.items() if k not in drop},
            {k: v for k, v in location.items() if k not in drop},
        )
    ]


def iter_pieces(data: DataRef) -> Iterator[Piece]:
    """The documents of every corpus `data` names, streamed as pieces (readers.py), in order."""
    done = 0.0
    for identity, location in corpus_sources(data):
        if identity["corpus"] == "synthetic":
            documents = synthetic.generate_corpus(
                identity["seed"], identity["documents"], identity["sentences_per_document"]
            )
            pieces = document_pieces(documents, done)
        elif identity["corpus"] == "hub":
            pieces = hub_pieces(identity, done)
        else:
            pieces = _file_pieces(location["files"], identity["format"], done)
        for piece in pieces:
            done = piece.done
            yield piece


def _file_pieces(files: list[str], layout: str, done: float) -> Iterator[Piece]:
    for name in files:
        path = Path(name)
        yield from file_pieces(path, layout, done)
        done += path.stat().st_size  # whole bytes, not characters, once the file is read


def corpus_size(data: DataRef) -> tuple[float | None, str]:
    """(how much input `iter_pieces` reads, its unit): bytes of files, synthetic documents or
    Hub rows; None when unknown (a whole Hub split) or when corpora of several kinds mix."""
    sizes = []
    for identity, location in corpus_sources(data):
        if identity["corpus"] == "synthetic":
            sizes.append((identity["documents"], "documents"))
        elif identity["corpus"] == "hub":
            sizes.append((hub_rows(identity), "rows"))
        else:
            sizes.append((sum(Path(f).stat().st_size for f in location["files"]), "bytes"))
    units = {unit for _, unit in sizes}
    if len(units) > 1 or any(size is None for size, _ in sizes):
        return None, units.pop() if len(units) == 1 else "items"
    return float(sum(size for size, _ in sizes)), units.pop()


def describe_corpus(data: DataRef) -> str:
    """One line: what the corpus is (for `bertabl plan` and the live progress)."""
    parts = []
    for identity, location in corpus_sources(data):
        if identity["corpus"] == "synthetic":
            parts.append(f"synthetic ({identity['documents']} documents)")
        elif identity["corpus"] == "hub":
            limit = identity["max_documents"]
            first = f" (first {limit} documents)" if limit else ""
            parts.append(f"hub:{identity['name']}{first}")
        else:
            files = location["files"]
            size = sum(Path(f).stat().st_size for f in files)
            where = files[0] if len(files) == 1 else str(Path(files[0]).parent)
            parts.append(
                f"{where} ({len(files)} file{'s' * (len(files) > 1)}, {size / 1e6:.1f} MB, "
                f"{identity['format']})"
            )
    return " + ".join(parts)


def load_corpus(data: DataRef) -> list[list[str]]:
    """Documents, each a list of sentences/segments, of the corpus `data` (corpus_data) names.

    Whole, in memory: for small corpora, tests and baselines. Pre-training streams the corpus
    into a token store instead (data/token_store.py).
    """
    documents: list[list[str]] = []
    current: list[str] = []
    for piece in iter_pieces(data):
        current.extend(piece.segments)
        if piece.ends_document:
            if current:
                documents.append(current)
            current = []
    if len(documents) < 2:
        raise too_few_documents(data, len(documents))
    return documents


def too_few_documents(data: DataRef, count: int) -> DataError:
    identity, location = corpus_sources(data)[0]
    if identity["corpus"] == "hub":
        where = f"hub:{identity['name']}"
    elif identity["corpus"] == "synthetic":
        where = "the synthetic corpus"
    else:
        where = location["files"][0]
    return DataError(
        f"{where}: the corpus has {count} document(s); next-sentence pairs need "
        "at least two (separate documents with a blank line in the bert format, give "
        "several files in the paragraphs format, or several ' = Title = ' articles)"
    )
