"""Known-answer tests for bertabl.finetune.families.span_qa: windows, answer positions, n-best
search, and oracle-logit round trips on real SQuAD v1.1 dev and a hand-written v2.0 file (no
network)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bertabl.data.formats.squad import load_squad_json, read_squad
from bertabl.finetune.families import span_qa as S
from bertabl.finetune.metrics import normalize_answer
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
VOCAB = DATA / "vocab" / "bert-base-uncased-vocab.txt"
SQUAD_DEV = DATA / "squad" / "dev-v1.1.json"


@pytest.fixture(scope="module")
def tok():
    if not VOCAB.exists():
        pytest.skip(f"BERT vocab not present at {VOCAB}")
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)


@pytest.fixture(scope="module")
def words(tok):
    """60 distinct words that are each exactly one wordpiece, so token index = word index."""
    vocab = VOCAB.read_text(encoding="utf-8").split("\n")
    out = [w for w in vocab[3000:3400] if w.isalpha() and w.isascii() and len(w) >= 4][:60]
    assert all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in out)
    return out


def _example(qid, question, context, answer=None, start=None, impossible=False):
    answers = {"text": [], "answer_start": []}
    if answer is not None:
        start = context.index(answer) if start is None else start
        answers = {"text": [answer], "answer_start": [start]}
    return {
        "id": qid,
        "title": "t",
        "context": context,
        "question": question,
        "answers": answers,
        "is_impossible": impossible,
    }


# ------------------------------------------------------------------ windows and train targets

QUESTION = "where did it go"  # 4 wordpieces -> [CLS] + 4 + [SEP]: context starts at index 6


def test_sliding_windows_hand_counted(tok, words):
    # max_seq_len 32 - 4 question - 3 specials = 25 context tokens per window; BERT's doc_stride
    # 7 = distance between window starts -> starts 0, 7, 14, 21, 28 (28 + 22 = 50 ends it).
    context = " ".join(words[:50])
    ex = _example("q", QUESTION, context, " ".join(words[30:33]))
    feats = S.prepare_train_features([ex], tok, max_seq_len=32, doc_stride=7)
    assert len(feats) == 5
    ctx_ids = tok(context, add_special_tokens=False)["input_ids"]
    for w, (f, start) in enumerate(zip(feats, (0, 7, 14, 21, 28), strict=True)):
        n = min(25, 50 - start)
        assert f["input_ids"][6:-1] == ctx_ids[start : start + n], w
        assert f["token_type_ids"] == [0] * 6 + [1] * (n + 1)
        assert f["attention_mask"] == [1] * (n + 7)
    # Consecutive windows overlap by 25 - 7 = 18 tokens.
    for a, b in zip(feats[:-1], feats[1:], strict=True):
        assert a["input_ids"][6 + 7 : -1] == b["input_ids"][6 : 6 + 18]

    # Answer = doc tokens 30..32: not in window 0 ([0, 25)), cut off in window 1 ([7, 32)),
    # inside windows 2, 3, 4 at 6 + (30 - window start).
    expected = [(0, 0), (0, 0), (22, 24), (15, 17), (8, 10)]
    assert [(f["start_positions"], f["end_positions"]) for f in feats] == expected
    for f, (s, e) in zip(feats[2:], expected[2:], strict=True):
        assert tok.decode(f["input_ids"][s : e + 1]) == " ".join(words[30:33])


def test_answer_positions_decode_to_answer(tok):
    context = (
        "In the final , the veteran quarterback Peyton Manning threw supercalifragilistic "
        "passes to the Broncos ' receivers in Santa Clara , California ."
    )
    exs = [
        _example("a", "who threw?", context, "Peyton Manning"),
        # Leading space in the gold text (it happens in SQuAD): the span starts at the word.
        _example("b", "who threw?", context, " Peyton Manning", context.index(" Peyton")),
        _example("c", "what passes?", context, "supercalifragilistic"),  # several wordpieces
        _example("d", "where?", context, "Santa Clara, California".replace(",", " ,")),
    ]
    feats = S.prepare_train_features(exs, tok)
    assert len(feats) == 4
    decoded = [
        tok.decode(f["input_ids"][f["start_positions"] : f["end_positions"] + 1]) for f in feats
    ]
    assert decoded[2] == "supercalifragilistic"
    for ex, text in zip(exs, decoded, strict=True):
        assert normalize_answer(text) == normalize_answer(ex["answers"]["text"][0])


def test_unanswerable_points_to_cls_in_every_window(tok, words):
    ex = _example("u", QUESTION, " ".join(words[:50]), impossible=True)
    feats = S.prepare_train_features([ex], tok, max_seq_len=32, doc_stride=7)
    assert len(feats) == 5
    assert all(f["start_positions"] == f["end_positions"] == 0 for f in feats)


def test_question_truncated_to_max_query_len(tok, words):
    ex = _example("q", QUESTION, " ".join(words[:10]), words[3])
    f = S.prepare_train_features([ex], tok, max_query_len=3)[0]
    assert f["token_type_ids"].count(0) == 3 + 2  # [CLS] where did it [SEP]
    assert tok.decode(f["input_ids"][1:4]) == "where did it"
    assert (f["start_positions"], f["end_positions"]) == (5 + 3, 5 + 3)


def test_eval_features_offsets_and_max_context(tok, words):
    context = " ".join(words[:50])
    ex = _example("q", QUESTION, context, words[30])
    feats = S.prepare_eval_features([ex], tok, max_seq_len=32, doc_stride=7)
    train = S.prepare_train_features([ex], tok, max_seq_len=32, doc_stride=7)
    assert [f["input_ids"] for f in feats] == [f["input_ids"] for f in train]
    for f in feats:
        assert f["example_id"] == "q"
        offs = f["offset_mapping"]
        assert offs[:6] == [None] * 6 and offs[-1] is None
        assert [context[a:b] for a, b in offs[6:-1]] == tok.convert_ids_to_tokens(
            f["input_ids"][6:-1]
        )
    # Each context token may start an answer in exactly one window.
    owners: dict = {}
    for w, f in enumerate(feats):
        for o, flag in zip(f["offset_mapping"], f["token_is_max_context"], strict=True):
            if flag:
                assert o not in owners
                owners[o] = w
    assert len(owners) == 50
    # Token 30 sits at window-relative 16/25 in w2 (min side 8), 9/25 in w3 (9), 2/22 in w4 (2).
    start = context.index(words[30])
    assert owners[(start, start + len(words[30]))] == 3


# ------------------------------------------------------------ postprocess on hand-built logits

CTX = "alpha beta gamma delta epsilon zeta"
WORD_OFFS = [(CTX.index(w), CTX.index(w) + len(w)) for w in CTX.split()]


def _feature(qid, word_range, max_ctx=None):
    """[CLS] q q [SEP] words... [SEP]: context token k + 4 is word word_range[k]."""
    offs = [None] * 4 + [WORD_OFFS[i] for i in word_range] + [None]
    flags = [False] * 4 + (max_ctx or [True] * len(word_range)) + [False]
    return {
        "example_id": qid,
        "input_ids": [0] * len(offs),
        "offset_mapping": offs,
        "token_is_max_context": flags,
    }


def _logits(n, **at):
    x = np.zeros(n)
    for pos, value in at.items():
        x[int(pos[1:])] = value
    return x


def test_postprocess_picks_best_valid_span():
    ex = [_example("x", "q", CTX)]
    feats = [_feature("x", range(6))]  # words at 4..9, [SEP] at 10
    # Highest start is a question token, highest end is [SEP] and beta comes before delta:
    # all invalid; the best valid pair is delta..epsilon (8 + 3) over beta..beta (1 + 9).
    s = [_logits(11, p1=9, p7=8, p5=1)]
    e = [_logits(11, p10=9.5, p5=9, p8=3)]
    preds, na = S.postprocess(ex, feats, s, e)
    assert preds == {"x": "delta epsilon"}
    assert na["x"] == pytest.approx(0 - 11)
    # Padded logit rows (longer than the feature) are fine; the padding is never looked at.
    padded = [np.concatenate([r[0], [100.0] * 5]) for r in (s, e)]
    assert S.postprocess(ex, feats, [padded[0]], [padded[1]])[0] == {"x": "delta epsilon"}
    # n_best=1 keeps only the top start (a question token): no valid span remains.
    preds, na = S.postprocess(ex, feats, s, e, n_best=1)
    assert preds == {"x": ""} and na["x"] == math.inf


def test_postprocess_respects_max_answer_len():
    ex = [_example("x", "q", CTX)]
    feats = [_feature("x", range(6))]
    s, e = [_logits(11, p4=5)], [_logits(11, p9=5, p6=1)]
    assert S.postprocess(ex, feats, s, e)[0]["x"] == CTX  # 6 tokens, score 10
    assert S.postprocess(ex, feats, s, e, max_answer_len=3)[0]["x"] == "alpha beta gamma"


def test_postprocess_combines_windows_and_v2_threshold():
    ex = [_example("x", "q", CTX), _example("y", "q", CTX)]
    # x: window 0 = words 0..3, window 1 = words 2..5; gamma/delta are "owned" by window 1.
    feats = [
        _feature("x", range(0, 4), [True, True, False, False]),
        _feature("x", range(2, 6)),
        _feature("y", range(6)),
    ]
    s = [_logits(9, p0=1, p5=2, p6=50), _logits(9, p0=3, p6=4), _logits(11, p0=8)]
    e = [_logits(9, p0=1, p5=3), _logits(9, p0=3, p6=3), _logits(11, p0=8, p4=1)]
    preds, na = S.postprocess(ex, feats, s, e)
    # Window 0 may not start at gamma (not max context there), so its best is beta (2 + 3);
    # epsilon in window 1 (4 + 3) beats it.
    assert preds["x"] == "epsilon"
    assert na["x"] == pytest.approx(min(1 + 1, 3 + 3) - 7)  # null = min over windows
    assert preds["y"] == "alpha" and na["y"] == pytest.approx(16 - 1)  # v1: never blank

    preds, _ = S.postprocess(ex, feats, s, e, version=2)  # threshold 0: y (15 > 0) blanked
    assert preds == {"x": "epsilon", "y": ""}
    preds, _ = S.postprocess(ex, feats, s, e, version=2, threshold=-5)  # na(x) = -5, not > -5
    assert preds == {"x": "epsilon", "y": ""}
    preds, _ = S.postprocess(ex, feats, s, e, version=2, threshold=-5.5)
    assert preds == {"x": "", "y": ""}
    preds, _ = S.postprocess(ex, feats, s, e, version=2, threshold=math.inf)
    assert preds == {"x": "epsilon", "y": "alpha"}


# ------------------------------------------------------------------ oracle round trips


def _oracle_logits(examples, features):
    """+10 at the first gold answer's start/end token in every window holding it, else 0;
    unanswerable: +10 at [CLS] in every window. Positions found from offsets, independently
    of prepare_train_features."""
    by_id = {ex["id"]: ex for ex in examples}
    starts, ends = [], []
    for f in features:
        ex = by_id[f["example_id"]]
        s, e = np.zeros(len(f["input_ids"])), np.zeros(len(f["input_ids"]))
        if ex["is_impossible"]:
            s[0] = e[0] = 10
        else:
            a = ex["answers"]["answer_start"][0]
            b = a + len(ex["answers"]["text"][0])
            ctx = [(k, o) for k, o in enumerate(f["offset_mapping"]) if o is not None]
            ks = [k for k, (x, y) in ctx if x <= a < y]
            ke = [k for k, (x, y) in ctx if x < b <= y]
            if ks and ke:
                s[ks[0]], e[ke[0]] = 10, 10
        starts.append(s)
        ends.append(e)
    return starts, ends


def _restrict(raw, ids):
    return [
        {
            "title": art["title"],
            "paragraphs": [
                {"context": p["context"], "qas": [q for q in p["qas"] if q["id"] in ids]}
                for p in art["paragraphs"]
            ],
        }
        for art in raw
    ]


def test_oracle_dev_v11(tok):
    if not SQUAD_DEV.exists():
        pytest.skip(f"SQuAD dev not present at {SQUAD_DEV}")
    examples = read_squad(SQUAD_DEV)[:300]
    features = S.prepare_eval_features(examples, tok, max_seq_len=384, doc_stride=128)
    assert len(features) == 320  # 20 windows beyond one per question: long contexts are split
    start_logits, end_logits = _oracle_logits(examples, features)
    preds, _ = S.postprocess(examples, features, start_logits, end_logits)
    gold = _restrict(load_squad_json(SQUAD_DEV), set(preds))
    scores = S.official_scores(gold, preds, {}, version=1)
    # 290/300. The 10 misses are all gold spans that start or end inside a wordpiece (mostly
    # answer_start errors in the Super Bowl 50 article: "8" pointing into "20–18", "5" into
    # "105", "gold" into "golden"); a span of whole tokens then yields the whole token.
    assert scores["exact_match"] == pytest.approx(290 / 300)
    assert scores["f1"] == pytest.approx(290 / 300)
    bounds: dict = {}  # question id -> (token start chars, token end chars) of its context
    for f in features:
        starts, ends = bounds.setdefault(f["example_id"], (set(), set()))
        starts.update(o[0] for o in f["offset_mapping"] if o is not None)
        ends.update(o[1] for o in f["offset_mapping"] if o is not None)
    for ex in examples:
        a = ex["answers"]["answer_start"][0]
        b = a + len(ex["answers"]["text"][0])
        aligned = a in bounds[ex["id"]][0] and b in bounds[ex["id"]][1]
        assert (preds[ex["id"]] == ex["answers"]["text"][0]) == aligned, ex["id"]


AMAZON = (
    "The Amazon river flows through Brazil , Peru and Colombia before reaching the Atlantic "
    "Ocean . It carries more water than any other river on Earth , and its basin covers about "
    "seven million square kilometres of rainforest . The river was named by Francisco de "
    "Orellana after a battle with female warriors in 1542 ."
)
SUN = "The Sun is a G-type main-sequence star at the centre of the Solar System ."

V2 = {
    "version": "v2.0",
    "data": [
        {
            "title": "Rivers",
            "paragraphs": [
                {
                    "context": AMAZON,
                    "qas": [
                        {
                            "id": "a1",
                            "question": "Which ocean does the Amazon reach?",
                            "is_impossible": False,
                            "answers": [{"text": "Atlantic Ocean", "answer_start": 78}],
                        },
                        {
                            "id": "a2",
                            "question": "Who named the Amazon river?",
                            "is_impossible": False,
                            "answers": [{"text": "Francisco de Orellana", "answer_start": 247}],
                        },
                        {
                            "id": "a3",
                            "question": "When was the battle?",
                            "is_impossible": False,
                            "answers": [{"text": "1542", "answer_start": 308}],
                        },
                        {
                            "id": "n1",
                            "question": "Which ocean does the Nile reach?",
                            "is_impossible": True,
                            "answers": [],
                            "plausible_answers": [{"text": "Atlantic Ocean", "answer_start": 78}],
                        },
                        {
                            "id": "n2",
                            "question": "How long is the Amazon river?",
                            "is_impossible": True,
                            "answers": [],
                        },
                    ],
                }
            ],
        },
        {
            "title": "Stars",
            "paragraphs": [
                {
                    "context": SUN,
                    "qas": [
                        {
                            "id": "a4",
                            "question": "What type of star is the Sun?",
                            "is_impossible": False,
                            "answers": [{"text": "G-type main-sequence star", "answer_start": 13}],
                        },
                        {
                            "id": "n3",
                            "question": "How old is the Sun?",
                            "is_impossible": True,
                            "answers": [],
                        },
                    ],
                }
            ],
        },
    ],
}


def test_oracle_v2_hand_written(tok, tmp_path):
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(V2), encoding="utf-8")
    examples, raw = read_squad(path), load_squad_json(path)  # read_squad checks answer_start
    features = S.prepare_eval_features(examples, tok, max_seq_len=48, doc_stride=16)
    assert len(features) > len(examples)  # the long paragraph needs several windows
    start_logits, end_logits = _oracle_logits(examples, features)
    preds, na = S.postprocess(
        examples, features, start_logits, end_logits, version=2, threshold=math.inf
    )
    for ex in examples:  # answerable: null 0, span 20; unanswerable: null 20, best span 0
        assert na[ex["id"]] == (20.0 if ex["is_impossible"] else -20.0)
    scores = S.official_scores(raw, preds, na, version=2)
    assert scores["exact"] == scores["f1"] == 1.0
    assert scores["HasAns_f1"] == scores["NoAns_f1"] == 1.0
    assert scores["na_threshold"] == -20.0
    # At the default threshold 0 the unanswerable ones come back blank already: same result.
    preds0, _ = S.postprocess(examples, features, start_logits, end_logits, version=2)
    assert {q for q, p in preds0.items() if not p} == {"n1", "n2", "n3"}
    assert S.official_scores(raw, preds0, na, version=2)["f1"] == 1.0


def test_questions_go_back_to_the_official_json_shape():
    question = {
        "id": "q1", "title": "Rivers", "context": "The Amazon reaches the Atlantic Ocean .",
        "question": "Which ocean?", "is_impossible": False,
        "answers": {"text": ["Atlantic Ocean", "the Atlantic Ocean"], "answer_start": [23, 19]},
    }  # fmt: skip
    assert S.as_squad_json([question]) == [
        {
            "title": "Rivers",
            "paragraphs": [
                {
                    "context": "The Amazon reaches the Atlantic Ocean .",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Which ocean?",
                            "is_impossible": False,
                            "answers": [
                                {"text": "Atlantic Ocean", "answer_start": 23},
                                {"text": "the Atlantic Ocean", "answer_start": 19},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
    # what the official scripts then score: both answers count, the best one wins
    scores = S.official_scores(S.as_squad_json([question]), {"q1": "Atlantic Ocean"}, {}, 1)
    assert scores == {"exact_match": 1.0, "f1": 1.0}
