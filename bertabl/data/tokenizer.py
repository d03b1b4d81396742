"""Tokenizers for pre-training: always a BERT-style WordPiece tokenizer ([CLS], [SEP], [MASK]).

`data.tokenizer` names one of:
- "synthetic": a vocab file written from the synthetic lexicon;
- a WordPiece `vocab.txt` path (e.g. BERT's `bert-base-uncased-vocab.txt`);
- a folder saved by transformers (`tokenizer.json` / `vocab.txt` + config);
- "hub:<name>": a tokenizer from the Hugging Face Hub (needs the network once; HF caches it);
- "train": a WordPiece vocabulary of `pretrain.vocab_size` entries trained on the corpus with
  the `tokenizers` library (so vocabulary size can be an ablation axis).

Like corpora, a tokenizer has an identity (content hashes or names: part of trial ids) and a
location (paths: not).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bertabl.data import synthetic
from bertabl.data.fingerprints import file_sha256
from bertabl.errors import DataError
from bertabl.io import atomic_write
from bertabl.trial.data import DataRef

if TYPE_CHECKING:  # transformers is imported where a tokenizer is built: planning (every CLI
    # command) only reads vocabulary sizes, and importing transformers costs ~2 s.
    from transformers import PreTrainedTokenizerBase

TRAIN, HUB = "train", "hub:"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class TokenizerSource(Protocol):
    """The `data` section's tokenizer keys (matrix/schema.py: DataSection)."""

    tokenizer: str
    lowercase: bool


def tokenizer_data(source: TokenizerSource) -> DataRef:
    """The tokenizer a matrix's data section names, as its trials refer to it."""
    name = source.tokenizer
    lowercase = source.lowercase
    if name == "synthetic":
        return DataRef(identity="synthetic", location=None)
    if name == TRAIN:  # the vocabulary size is pretrain.vocab_size, in the pre-training config
        return DataRef(identity={"trained": "wordpiece", "lowercase": lowercase}, location=None)
    if name.startswith(HUB):
        return DataRef(identity={"hub": name.removeprefix(HUB)}, location=None)
    path = Path(name).resolve()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        if not any(p.name in ("tokenizer.json", "vocab.txt") for p in files):
            raise DataError(
                f"{path}: no tokenizer.json or vocab.txt in this folder; give a folder saved by "
                "transformers' save_pretrained, or a vocab.txt path"
            )
        digest = hashlib.sha256()
        for p in files:
            digest.update(p.name.encode() + _file_sha256(p))
        return DataRef(identity={"folder_sha256": digest.hexdigest()[:16]}, location=str(path))
    if not path.is_file():
        raise DataError(
            f"{path}: tokenizer not found; give a WordPiece vocab.txt, a tokenizer folder, "
            "'hub:<name>', 'train' or 'synthetic'"
        )
    identity = {
        "vocab_sha256": _file_sha256(path).hex()[:16],
        "lowercase": lowercase,
    }
    return DataRef(identity=identity, location=str(path))


def _file_sha256(path: Path) -> bytes:
    return file_sha256(path)  # an input of the plan (data/fingerprints.py)


def build_tokenizer(
    data: DataRef,
    workdir: Path,
    vocab_size: int = 0,
    documents: Iterable[list[str]] | None = None,
    cache_dir: Path | None = None,
) -> PreTrainedTokenizerBase:
    """The tokenizer `data` (corpus.corpus_data) names.

    A synthetic vocab is written to `workdir`. A trained one needs `vocab_size` and the corpus
    `documents` (any iterable of segment lists, read only if the vocabulary is trained now: a
    stream of the corpus does); with a `cache_dir` it is trained once and shared by every trial
    that asks for the same (corpus, size).
    """
    identity, location = data.identity["tokenizer"], data.location["tokenizer"]
    if identity == "synthetic":
        workdir.mkdir(parents=True, exist_ok=True)
        vocab_file = workdir / "vocab.txt"
        vocab_file.write_text("\n".join(synthetic.lexicon().vocab()) + "\n", encoding="utf-8")
        return _wordpiece(vocab_file, lowercase=True)
    if "trained" in identity:
        if documents is None or vocab_size < len(SPECIAL_TOKENS) + 1:
            raise DataError(
                "data.tokenizer = 'train' needs pretrain.vocab_size (e.g. 8000) and a corpus"
            )
        return _trained(data, documents, vocab_size, identity["lowercase"], cache_dir)
    if "hub" in identity:
        return _checked(_from_pretrained(identity["hub"]), identity["hub"])
    if "folder_sha256" in identity:
        return _checked(_from_pretrained(location), location)
    return _wordpiece(location, identity["lowercase"])


def vocab_size(source: TokenizerSource) -> int | None:
    """Vocabulary size of the tokenizer a matrix's data section names (for size estimates; a
    trained vocabulary's size is each trial's pretrain.vocab_size, so 0 here). A Hub tokenizer
    is only looked up in the Hugging Face cache (planning never waits on the network): None
    when it is not there."""
    name = source.tokenizer
    if name == "synthetic":
        return len(synthetic.lexicon().vocab())
    if name == TRAIN:
        return 0
    if name.startswith(HUB):
        from transformers import AutoTokenizer

        try:
            return len(AutoTokenizer.from_pretrained(name.removeprefix(HUB), local_files_only=True))
        except (OSError, ValueError):
            return None
    path = Path(name)
    if path.is_dir():
        return len(_from_pretrained(str(path)))
    if not path.is_file():
        raise DataError(f"{path}: vocabulary file not found; give a WordPiece vocab.txt path")
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line)


def _wordpiece(vocab: str | Path, lowercase: bool) -> PreTrainedTokenizerBase:
    """BERT's (fast) WordPiece tokenizer over a vocab.txt."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(vocab), do_lower_case=lowercase)


def _from_pretrained(name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:  # the local copy (a folder, or the Hugging Face cache) first: no network round trips
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        pass
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"tokenizer '{name}' could not be loaded ({first}); a hub name needs the network "
            "(or the Hugging Face cache), a folder needs transformers' saved tokenizer files"
        ) from None


def _checked(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    missing = [
        t
        for t in ("cls_token", "sep_token", "mask_token", "pad_token")
        if not getattr(tokenizer, t)
    ]
    if missing:
        raise DataError(
            f"tokenizer '{name}' has no {', '.join(missing)}; BERT pre-training needs [CLS], "
            "[SEP], [MASK] and [PAD] tokens (use a BERT WordPiece tokenizer)"
        )
    return tokenizer


def trained_vocab_dir(data: DataRef, size: int, cache_dir: Path) -> Path:
    """Where the vocabulary of `size` trained on `data`'s corpus is cached in a run."""
    key = json.dumps({"corpus": data.identity, "size": size}, sort_keys=True)
    return Path(cache_dir) / f"tokenizer-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _trained(
    data: DataRef,
    documents: Iterable[list[str]],
    size: int,
    lowercase: bool,
    cache_dir: Path | None,
) -> PreTrainedTokenizerBase:
    """A WordPiece vocabulary trained on the corpus, with BERT's normaliser and pre-tokeniser.

    `tokenizers` does the training. Its trainer numbers tokens in hash-map order, which differs
    between processes, so the vocabulary is renumbered canonically: specials first, then the
    tokens in sorted order (WordPiece matching is longest-first, so ids do not change how text
    splits). It also breaks frequency ties in hash-map order, so two trainings can differ in a
    few tokens at the size cut-off (seen with a 60-token vocabulary; two 4,000-token trainings on
    the Gutenberg books agreed). Hence, with a `cache_dir` (the run directory's), one trial trains
    it under a file lock and every other trial of the run loads that copy; each saved model
    carries its vocabulary.
    """
    if cache_dir is None:
        with tempfile.TemporaryDirectory() as folder:
            return _train_vocab(documents, size, lowercase, Path(folder))
    folder = trained_vocab_dir(data, size, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent trials: the first trains, the rest wait
        if (folder / "vocab.txt").is_file():
            return _wordpiece(folder / "vocab.txt", lowercase)
        return _train_vocab(documents, size, lowercase, folder)


def _train_vocab(
    documents: Iterable[list[str]], size: int, lowercase: bool, folder: Path
) -> PreTrainedTokenizerBase:
    from tokenizers import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase or None)
    wordpiece.train_from_iterator(
        (sentence for document in documents for sentence in document),
        vocab_size=size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    tokens = [t for t in wordpiece.get_vocab() if t not in SPECIAL_TOKENS]
    vocab = folder / "vocab.txt"
    atomic_write(vocab, "".join(f"{t}\n" for t in [*SPECIAL_TOKENS, *sorted(tokens)]).encode())
    return _wordpiece(vocab, lowercase)
