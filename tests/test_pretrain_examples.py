"""NSP pair construction and MLM masking, checked against their definitions."""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from transformers import DataCollatorForLanguageModeling

from bertabl.data import synthetic
from bertabl.data.tokenizer import build_tokenizer
from bertabl.pretrain.examples import IS_NEXT, NOT_NEXT, build_pair_examples

CLS, SEP = 2, 3


def _documents(n_docs: int, rng: random.Random):
    """Documents whose every token id is unique: id -> (document, position in document)."""
    where, docs, next_id = {}, [], 10
    for d in range(n_docs):
        doc, position = [], 0
        for _ in range(rng.randint(2, 12)):
            sentence = []
            for _ in range(rng.randint(3, 15)):
                sentence.append(next_id)
                where[next_id] = (d, position)
                next_id += 1
                position += 1
            doc.append(sentence)
        docs.append(doc)
    return docs, where


def _segments(example):
    ids = example["input_ids"]
    first_sep = ids.index(SEP)
    return ids[1:first_sep], ids[first_sep + 1 : -1]


def test_pairs_are_well_formed_and_isnext_pairs_are_consecutive():
    rng = random.Random(0)
    docs, where = _documents(300, rng)
    examples = build_pair_examples(docs, 64, random.Random(1), CLS, SEP)
    assert len(examples) > 500
    for ex in examples:
        ids = ex["input_ids"]
        assert len(ids) <= 64
        assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
        a, b = _segments(ex)
        assert a and b
        assert ex["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        assert ex["special_tokens_mask"] == [1] + [0] * len(a) + [1] + [0] * len(b) + [1]
        for segment in (a, b):  # truncation only trims ends: each segment is a contiguous run
            positions = [where[t] for t in segment]
            assert len({d for d, _ in positions}) == 1
            assert [p for _, p in positions] == list(range(positions[0][1], positions[-1][1] + 1))
        doc_a, doc_b = where[a[0]][0], where[b[0]][0]
        if ex["next_sentence_label"] == IS_NEXT:
            assert doc_a == doc_b and where[a[-1]][1] < where[b[0]][1]
        else:
            assert ex["next_sentence_label"] == NOT_NEXT
            assert doc_a != doc_b


def test_isnext_ratio_is_about_half():
    docs, _ = _documents(2000, random.Random(2))
    examples = build_pair_examples(docs, 64, random.Random(3), CLS, SEP)
    n = len(examples)
    is_next = sum(ex["next_sentence_label"] == IS_NEXT for ex in examples)
    # Each label is a fair coin: within 4 binomial standard deviations of 1/2.
    assert abs(is_next / n - 0.5) < 4 * math.sqrt(0.25 / n)


def test_masking_rates_match_the_configured_mix(tmp_path: Path):
    tokenizer = build_tokenizer(
        {"identity": {"tokenizer": "synthetic"}, "location": {"tokenizer": None}}, tmp_path
    )
    corpus = synthetic.generate_corpus(seed=0, documents=400, sentences_per_document=8)
    docs = [tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in corpus]
    examples = build_pair_examples(
        docs, 64, random.Random(0), tokenizer.cls_token_id, tokenizer.sep_token_id
    )
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1, seed=0
    )
    selected = masked = kept = replaced = ordinary = 0
    starts = [s for _ in range(4) for s in range(0, len(examples), 64)]  # 4 passes: >100k tokens
    for start in starts:
        chunk = [
            {k: v for k, v in e.items() if k != "next_sentence_label"}
            for e in examples[start : start + 64]
        ]
        originals = collator.tokenizer.pad(
            [{"input_ids": e["input_ids"]} for e in chunk], return_tensors="pt"
        )["input_ids"]
        batch = collator(chunk)
        chosen = batch["labels"] != -100
        special = torch.isin(originals, torch.tensor(tokenizer.all_special_ids))
        assert not (chosen & special).any()  # [CLS]/[SEP]/[PAD] are never selected
        assert (batch["labels"][chosen] == originals[chosen]).all()
        ordinary += int((~special).sum())
        selected += int(chosen.sum())
        now = batch["input_ids"][chosen]
        masked += int((now == tokenizer.mask_token_id).sum())
        kept += int((now == originals[chosen]).sum())
        replaced += int(((now != originals[chosen]) & (now != tokenizer.mask_token_id)).sum())
    assert ordinary > 100_000
    assert abs(selected / ordinary - 0.15) < 0.01
    # A random replacement can draw the original token (1 in ~300 here), which reads as "kept".
    assert abs(masked / selected - 0.8) < 0.01
    assert abs(kept / selected - 0.1) < 0.01
    assert abs(replaced / selected - 0.1) < 0.01
