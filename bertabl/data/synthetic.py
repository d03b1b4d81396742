"""The embedded synthetic suite: a generated corpus and two fine-tuning tasks, no downloads.

The language is deliberately small and regular so that the `tiny` model (2 layers, 64 wide,
~20 s of CPU pre-training) learns it, and so that what it learns is what the tasks need:
- Words belong to *topics* (3 topics; 6 nouns, 4 verbs, 4 adjectives each). Every sentence has one
  shape, `the <adj> <subject> <verb> with the <object> .`, and a document keeps to one topic (nouns
  always, adjectives/verbs up to OFF_TOPIC_RATE noise), so which words belong together is learnable
  from co-occurrence by MLM, and an NSP negative (a span from a random other document) is
  off-topic 2 times in 3: NSP has a real signal (pre-training NSP accuracy ends near 0.8).
- Consecutive sentences form a *chain*: each sentence's subject is the previous sentence's object.

The two tasks hinge on topic knowledge that pre-training provides and that 2,000 labelled examples
do not teach a randomly initialised model in a few epochs (it stays at chance), so the demo
measures what pre-training buys. Each label depends on context on both sides of one token:
- `syn_agree` (single sentence): `the <adj> <left> <verb> with the <right> .` -> 1 iff the nouns
  left and right of "with" share a topic. The left side (adjective, verb, noun) is on the left
  noun's topic; the right noun is on it (1) or from another topic (0).
- `syn_chain` (sentence pair): -> 1 iff B continues A's chain: B's subject is A's object (1), or a
  noun of another topic than A (0). B's other words come from a random topic and carry no signal,
  so the label is decided by A (on one side of [SEP]) against B's subject (on the other). This is
  what NSP's "is B the next sentence of A" learns; an identity-only version (negatives from A's
  topic) is not learnable at this scale: the tiny model does not learn to copy nouns across
  sentences within its pre-training budget, and every initialisation stayed at chance.

Both tasks are balanced (labels alternate, then are shuffled) and every corpus and split is a pure
function of its seed. The vocabulary is fixed (it does not depend on the data seed), so checkpoints
trained on one synthetic corpus can be fine-tuned on tasks generated from another seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FUNCTION_WORDS = ["the", "a", "with", "and", "near", "of", "."]
N_TOPICS = 3
NOUNS_PER_TOPIC = 6
VERBS_PER_TOPIC = 4
ADJECTIVES_PER_TOPIC = 4
OFF_TOPIC_RATE = 0.05  # chance an adjective or verb comes from another topic
TEMPLATE = "the {adj} {subject} {verb} with the {obj} ."  # the one sentence shape


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

    def sentence(self, topic: int, subject: str, obj: str) -> str:
        adj = self.pick(self.lex.adjectives, topic)
        verb = self.pick(self.lex.verbs, topic)
        return TEMPLATE.format(adj=adj, subject=subject, verb=verb, obj=obj)


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
        # The adjective and verb follow the left noun (as in the corpus); the right noun decides.
        text_a.append(writer.sentence(left_topic, left, right))
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
        if label:
            next_subject = obj
        else:
            other = rng.choice([t for t in range(N_TOPICS) if t != topic])
            next_subject = rng.choice(lex.nouns[other])
        filler = rng.randrange(N_TOPICS)  # B's other words: a random topic, no signal
        next_obj = rng.choice([w for w in lex.nouns[filler] if w != next_subject])
        text_a.append(writer.sentence(topic, subject, obj))
        text_b.append(writer.sentence(filler, next_subject, next_obj))
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
