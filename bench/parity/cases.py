"""The parity cases: one real task per task family, its data slice and its hyperparameters.

Both sides read the same examples: the bench writes each case's files in the task's original
format into a scratch folder (CoNLL's first documents, SQuAD articles split in two, a SWAG-format
file built from the Gutenberg books), and the Trainer side reads them through bertabl's readers
(`load_split`, with bertabl's seeded slices), so both sides train and score on identical rows.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import SHARED_DATA

GLUE = SHARED_DATA / "glue"
CONLL = SHARED_DATA / "conll2003"
SQUAD_DEV = SHARED_DATA / "squad" / "dev-v1.1.json"
BOOKS = SHARED_DATA / "corpus" / "gutenberg"


@dataclass(frozen=True)
class Case:
    """One task fine-tuned by both sides: what data, how much, which hyperparameters."""

    family: str
    task: str
    slice: str  # said in the output
    metric: str  # the score compared (the task's dev metric)
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5
    max_seq_len: int = 128
    train_examples: int = 0  # bertabl's seeded slice; 0 = the whole (written) file
    dev_examples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # task_settings (doc_stride, ...)

    def data_section(self, folder: Path) -> dict[str, Any]:
        """The matrix's [data] table for this case, its files under `folder`."""
        data: dict[str, Any] = {"glue_dir": str(GLUE)}
        data |= {"conll_dir": str(folder / "conll"), "squad_dir": str(folder / "squad")}
        data["swag_dir"] = str(folder / "swag")
        limits = {"max_train_examples": self.train_examples, "max_dev_examples": self.dev_examples}
        data["tasks"] = {self.task: limits}
        return data


# lr 5e-5, batch 32, 2 epochs, 10% warmup, weight decay 0.01, dynamic padding: the setup.
CASES: dict[str, Case] = {
    "sst2": Case("classification", "sst2", "2,000 seeded train sentences, full dev", "accuracy",
                 train_examples=2000),
    "mrpc": Case("classification", "mrpc", "full train (3,668 pairs), full dev", "f1"),
    "stsb": Case("regression", "stsb", "2,000 seeded train pairs, full dev", "pearson",
                 train_examples=2000),
    "conll2003": Case("tagging", "conll2003",
                      "first 105 documents of eng.train (1,515 sentences), eng.testa", "f1"),
    "squad_v1": Case("span_qa", "squad_v1",
                     "dev-v1.1 articles 1-24 as train (1,000 seeded questions), "
                     "articles 25-48 as dev (500 seeded questions), windows of 256, stride 64",
                     "f1", learning_rate=1e-4, max_seq_len=256, train_examples=1000,
                     dev_examples=500, extra={"doc_stride": 64}),
    "swag": Case("multiple_choice", "swag",
                 "SWAG-format next-sentence choice from the Gutenberg books: 600 train, "
                 "400 dev", "accuracy", max_seq_len=96),
}  # fmt: skip
FAMILIES = ("classification", "regression", "tagging", "span_qa", "multiple_choice")


def write_files(folder: Path) -> None:
    """Every case's files that are not read from ../shared/data as they are."""
    _conll_first_documents(folder / "conll", documents=105)
    _squad_split(folder / "squad", train_articles=24)
    _swag_from_books(folder / "swag", train=600, dev=400)


def _conll_first_documents(folder: Path, documents: int) -> None:
    """eng.train cut after its first `documents` documents; eng.testa as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    kept, seen = [], 0
    for line in (CONLL / "eng.train").read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("-DOCSTART-"):
            seen += 1
            if seen > documents:
                break
        kept.append(line)
    (folder / "eng.train").write_text("".join(kept), encoding="utf-8")
    shutil.copyfile(CONLL / "eng.testa", folder / "eng.testa")


def _squad_split(folder: Path, train_articles: int) -> None:
    """SQuAD v1.1's dev file (the only one here) split by article: the first
    `train_articles` articles as train-v1.1.json, the rest as dev-v1.1.json. No article (so no
    paragraph) is in both."""
    folder.mkdir(parents=True, exist_ok=True)
    squad = json.loads(SQUAD_DEV.read_text(encoding="utf-8"))
    parts = {"train": squad["data"][:train_articles], "dev": squad["data"][train_articles:]}
    for split, articles in parts.items():
        text = json.dumps({"version": squad["version"], "data": articles})
        (folder / f"{split}-v1.1.json").write_text(text, encoding="utf-8")


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def _swag_from_books(folder: Path, train: int, dev: int, seed: int = 0) -> None:
    """A four-way next-sentence choice in SWAG's CSV format, from the Gutenberg books: sent1 is
    a sentence, sent2 the next sentence's first two words, the right ending the rest of it; the
    three wrong endings are the rest of other sentences of the same book. Train and dev come
    from different books.

    Wrong endings from the same book, not from other books: with other books' endings, every
    training example's wrong endings included the dev books' style and its right ending never
    did, so both sides learned "the dev books' style is wrong" and scored below chance on dev
    (bertabl 14.6% at seed 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    books = sorted(BOOKS.glob("*.txt"))
    sentences = {book.name: _sentences(book) for book in books}
    rng = random.Random(seed)
    splits = {"train.csv": (books[:4], train), "val.csv": (books[4:], dev)}
    header = ["", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
              "ending0", "ending1", "ending2", "ending3", "label"]  # fmt: skip
    for name, (own, size) in splits.items():
        pairs = [
            (book.name, a, b)
            for book in own
            for a, b in zip(sentences[book.name], sentences[book.name][1:], strict=False)
        ]
        rows = []
        for n, (book, first, second) in enumerate(rng.sample(pairs, size)):
            words = second.split()
            start, right = " ".join(words[:2]), " ".join(words[2:])
            others = [s for s in rng.sample(sentences[book], 5) if s not in (first, second)]
            wrong = [" ".join(s.split()[2:]) for s in others[:3]]
            label = rng.randrange(4)
            endings = wrong[:label] + [right] + wrong[label:]
            rows.append([n, f"gutenberg-{book}", n, f"{first} {start}", first, start, "gold",
                         *endings, label])  # fmt: skip
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def _sentences(book: Path) -> list[str]:
    """A book's sentences of 6 to 40 words, in order (paragraphs split at sentence ends)."""
    text = book.read_text(encoding="utf-8").replace("\r\n", "\n")
    out = []
    for paragraph in text.split("\n\n")[1:]:  # the first line is the [Title by Author] tag
        for sentence in _SENTENCE.split(" ".join(paragraph.split())):
            if 6 <= len(sentence.split()) <= 40:
                out.append(sentence)
    return out
