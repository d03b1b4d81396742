"""The embedded synthetic suite: a generated corpus and two fine-tuning tasks, no downloads.

The language is small but structured so that pre-training has something real to learn:
- Words belong to *topics*. A document keeps to one topic (with some noise), so which nouns belong
  together is learnable from co-occurrence, and a random sentence from another document (an NSP
  negative) is usually off-topic.
- Consecutive sentences form a *chain*: each sentence's subject is the previous sentence's object.
  So "is B the next sentence of A" has a local answer too, not only a topical one.

The two tasks need context on both sides of a token (so objectives can differ measurably):
- `syn_agree` (single sentence): "the <adj> <noun> <verb> with the <noun> ." -> 1 iff the nouns
  left and right of "with" share a topic.
- `syn_chain` (sentence pair): -> 1 iff B's subject is A's object (B continues A's chain); the
  negative B keeps A's topic, so the label cannot be read off topic alone.

The vocabulary is fixed (it does not depend on the data seed), so checkpoints trained on one
synthetic corpus can be fine-tuned on tasks generated from another seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FUNCTION_WORDS = ["the", "a", "with", "and", "near", "of", "."]
N_TOPICS = 4
NOUNS_PER_TOPIC = 8
VERBS_PER_TOPIC = 4
ADJECTIVES_PER_TOPIC = 4
OFF_TOPIC_RATE = 0.05  # chance an adjective or verb comes from another topic
WITH_RATE = 0.5
AGREE_FILLER = "left"


@dataclass(frozen=True)
class Lexicon:
    """Content words per topic."""

    nouns: tuple[tuple[str, ...], ...]
    verbs: tuple[tuple[str, ...], ...]
    adjectives: tuple[tuple[str, ...], ...]

    def vocab(self) -> list[str]:
        """Every token of the language, specials first (ids are positions in this list)."""
        words = [w for group in (self.nouns, self.verbs, self.adjectives) for t in group for w in t]
        return SPECIAL_TOKENS + FUNCTION_WORDS + words


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The fixed lexicon: pronounceable pseudo-words, distinct, generated from a constant seed."""
    rng = random.Random(20181011)  # the BERT paper's arXiv date; any constant would do
    onsets = "b d f g k l m n p r s t v z".split()
    vowels = "a e i o u".split()
    seen: set[str] = set(FUNCTION_WORDS)

    def word(syllables: int) -> str:
        while True:
            w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
            if w not in seen:
                seen.add(w)
                return w

    def groups(n: int, syllables: int) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(word(syllables) for _ in range(n)) for _ in range(N_TOPICS))

    return Lexicon(
        nouns=groups(NOUNS_PER_TOPIC, 2),
        verbs=groups(VERBS_PER_TOPIC, 3),
        adjectives=groups(ADJECTIVES_PER_TOPIC, 3),
    )


def topic_of(noun: str) -> int:
    """The topic a noun belongs to."""
    for t, nouns in enumerate(lexicon().nouns):
        if noun in nouns:
            return t
    raise KeyError(noun)


class _Writer:
    """Draws words and sentences for one topic at a time."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.lex = lexicon()

    def pick(self, groups: tuple[tuple[str, ...], ...], topic: int) -> str:
        if self.rng.random() < OFF_TOPIC_RATE:
            topic = self.rng.randrange(N_TOPICS)
        return self.rng.choice(groups[topic])

    def noun(self, topic: int) -> str:
        return self.pick(self.lex.nouns, topic)

    def sentence(self, topic: int, subject: str, obj: str, link: str | None = None) -> str:
        adj = self.pick(self.lex.adjectives, topic)
        verb = self.pick(self.lex.verbs, topic)
        if link is None:
            link = "with the" if self.rng.random() < WITH_RATE else "the"
        return f"the {adj} {subject} {verb} {link} {obj} ."


def generate_corpus(seed: int, documents: int, sentences_per_document: int) -> list[list[str]]:
    """Documents (lists of sentences) for pre-training; sentences within a document chain."""
    rng = random.Random(seed)
    writer = _Writer(rng)
    lex = writer.lex
    corpus = []
    for _ in range(documents):
        topic = rng.randrange(N_TOPICS)
        subject = rng.choice(lex.nouns[topic])
        doc = []
        for _ in range(sentences_per_document):
            obj = rng.choice([w for w in lex.nouns[topic] if w != subject])
            doc.append(writer.sentence(topic, subject, obj))
            subject = obj
        corpus.append(doc)
    return corpus


def generate_agree(seed: int, n: int) -> dict[str, list]:
    """`syn_agree` examples: columns text_a, label (balanced)."""
    rng = random.Random(seed)
    writer = _Writer(rng)
    lex = writer.lex
    text_a, labels = [], []
    for i in range(n):
        label = i % 2
        left_topic = rng.randrange(N_TOPICS)
        right_topic = left_topic
        if not label:
            right_topic = rng.choice([t for t in range(N_TOPICS) if t != left_topic])
        left = rng.choice(lex.nouns[left_topic])
        right = rng.choice([w for w in lex.nouns[right_topic] if w != left])
        filler = left_topic if AGREE_FILLER == "left" else rng.randrange(N_TOPICS)
        adj = writer.pick(lex.adjectives, filler)
        verb = writer.pick(lex.verbs, filler)
        text_a.append(f"the {adj} {left} {verb} with the {right} .")
        labels.append(label)
    order = list(range(n))
    rng.shuffle(order)
    return {"text_a": [text_a[i] for i in order], "label": [labels[i] for i in order]}


def generate_chain(seed: int, n: int) -> dict[str, list]:
    """`syn_chain` examples: columns text_a, text_b, label (balanced)."""
    rng = random.Random(seed)
    writer = _Writer(rng)
    lex = writer.lex
    text_a, text_b, labels = [], [], []
    for i in range(n):
        label = i % 2
        topic = rng.randrange(N_TOPICS)
        subject, obj = rng.sample(lex.nouns[topic], 2)
        next_subject = obj
        if not label:
            next_subject = rng.choice([w for w in lex.nouns[topic] if w not in (obj, subject)])
        next_obj = rng.choice([w for w in lex.nouns[topic] if w != next_subject])
        text_a.append(writer.sentence(topic, subject, obj))
        text_b.append(writer.sentence(topic, next_subject, next_obj))
        labels.append(label)
    order = list(range(n))
    rng.shuffle(order)
    return {
        "text_a": [text_a[i] for i in order],
        "text_b": [text_b[i] for i in order],
        "label": [labels[i] for i in order],
    }


def split_seed(seed: int, task: str, split: str) -> int:
    """A distinct, stable seed per (data seed, task, split) so train and dev never coincide."""
    return random.Random(f"{seed}/{task}/{split}").randrange(2**31)
