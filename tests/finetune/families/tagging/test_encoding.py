"""CoNLL NER's encoding: first-sub-token labelling, tag schemes, truncation, decoding back to
word tags, entity-level scores, document context."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import BertTokenizerFast

from bench.parity.trainer import run_ner_features
from bertabl.data.formats.conll import CONLL_LABELS, read_conll2003
from bertabl.finetune.families.tagging import encoding as ner
from bertabl.finetune.metrics import iob1_to_iob2, iob2_to_iob1
from tests.conftest import FIXTURES as TEST_FIXTURES
from tests.conftest import SHARED_DATA

FIXTURES = TEST_FIXTURES / "ner"
SHARED = SHARED_DATA
ID = ner.LABEL_TO_ID

# "Woodhouse" -> wood ##house and "Highbury" -> high ##bury, in the tiny vocab as in BERT's.
EMMA = {
    "tokens": ["Emma", "Woodhouse", "lived", "in", "Highbury", "."],
    "tags": ["I-PER", "I-PER", "O", "O", "I-LOC", "O"],
    "document": 0,
}


@pytest.fixture(scope="module")
def bert_tok() -> BertTokenizerFast:
    vocab = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
    if not vocab.is_file():
        pytest.skip("shared BERT vocab absent")
    return BertTokenizerFast(vocab=str(vocab), do_lower_case=True)


def test_labels_follow_conll_order() -> None:
    assert ner.LABELS == CONLL_LABELS and ID["B-PER"] == 1 and ID["I-MISC"] == 8


@pytest.mark.parametrize("which", ["tiny", "bert"])
def test_first_sub_token_carries_the_label(which: str, tok, request) -> None:
    tokenizer = tok if which == "tiny" else request.getfixturevalue("bert_tok")
    [f] = ner.encode([EMMA], tokenizer, 32)
    pieces = tokenizer.convert_ids_to_tokens(f["input_ids"])
    assert pieces == [
        "[CLS]",
        "emma",
        "wood",
        "##house",
        "lived",
        "in",
        "high",
        "##bury",
        ".",
        "[SEP]",
    ]
    # The file's IOB1 tags, at first sub-tokens only: `wood` is labelled, `##house` is not.
    x = ner.IGNORE
    assert f["labels"] == [x, ID["I-PER"], ID["I-PER"], x, 0, 0, ID["I-LOC"], x, 0, x]
    # In IOB2, "I-PER I-PER" opens with B-: B-PER I-PER.
    [f2] = ner.encode([EMMA], tokenizer, 32, scheme="iob2")
    assert f2["labels"] == [x, ID["B-PER"], ID["I-PER"], x, 0, 0, ID["B-LOC"], x, 0, x]
    assert f["word_ids"] == [None, 0, 1, 1, 2, 3, 4, 4, 5, None]
    assert f["token_type_ids"] == [0] * 10 and f["attention_mask"] == [1] * 10
    assert (f["num_words"], f["truncated_words"], f["dropped_words"]) == (6, 0, 0)


def test_tag_schemes_inside_encode(tok) -> None:
    # B- in IOB1 only separates touching same-type entities; I-X after another type opens one.
    s = {
        "tokens": ["emma", "wood", "london", "paris", "he"],
        "tags": ["I-PER", "B-PER", "I-LOC", "I-ORG", "O"],
    }
    iob2 = ["B-PER", "B-PER", "B-LOC", "B-ORG", "O"]
    for scheme, tags, expected in [
        ("iob1", s["tags"], s["tags"]),  # the file's own tags
        ("iob1", iob2, s["tags"]),  # IOB2 data is written back in IOB1
        ("iob2", s["tags"], iob2),
        ("iob2", iob2, iob2),
    ]:
        [f] = ner.encode([s | {"tags": tags}], tok, 32, scheme=scheme)
        firsts = [lab for lab in f["labels"] if lab != ner.IGNORE]
        assert [ner.LABELS[i] for i in firsts] == expected
        assert ner.decode(f["labels"], f["word_ids"], f["num_words"]) == expected


def test_iob2_to_iob1_keeps_b_only_between_touching_entities_of_one_type() -> None:
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-ORG", "B-MISC"]
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "B-ORG", "I-MISC"]
    assert iob2_to_iob1(iob2) == iob1 and iob1_to_iob2(iob1) == iob2
    assert iob2_to_iob1(iob1) == iob1 and iob1_to_iob2(iob2) == iob2  # no-ops on their own


def test_training_labels_are_the_trainer_recipes(tok) -> None:
    # The 16-point NER gap against transformers' Trainer (issue 27): bertabl trained on IOB2
    # conversions of CoNLL's IOB1 tags, the Trainer recipe on the tags as in the files.
    sentences = read_conll2003(FIXTURES / "eng.iob1")  # CoNLL-2003's format and IOB1 tags
    assert any(t.startswith("I-") and (i == 0 or s["tags"][i - 1] == "O")
               for s in sentences for i, t in enumerate(s["tags"]))  # fmt: skip
    encoded = ner.encode(sentences, tok, 64)
    assert [f["labels"] for f in encoded] == run_ner_features(sentences, tok, 64)["labels"]


def test_truncation_counts_and_decodes_cut_words_as_o(tok, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="bertabl.finetune.families.tagging.encoding"):
        # 6 positions: [CLS] emma wood ##house lived [SEP] -> in, Highbury, "." are cut.
        [f] = ner.encode([EMMA], tok, 6)
    assert (f["truncated_words"], f["dropped_words"]) == (3, 3)
    assert "3 cut by max_seq_len=6" in caplog.text
    assert ner.decode(f["labels"], f["word_ids"], f["num_words"]) == [
        "I-PER",
        "I-PER",
        "O",
        "O",
        "O",
        "O",
    ]
    # 4 positions cut Woodhouse after `wood`: its first piece survives, so it keeps its label.
    [f] = ner.encode([EMMA], tok, 4)
    assert f["truncated_words"] == 4 and ner.decode(f["labels"], f["word_ids"], 6)[:2] == [
        "I-PER",
        "I-PER",
    ]
    # Without num_words the tail beyond the last kept word cannot be known.
    assert len(ner.decode(f["labels"], f["word_ids"])) == 2


def test_decode_accepts_strings_tensors_and_padding(tok) -> None:
    [f] = ner.encode([EMMA], tok, 32)
    padded = torch.tensor(f["labels"] + [ner.IGNORE] * 5).clamp(min=0)
    assert ner.decode(padded, f["word_ids"], 6) == EMMA["tags"]
    as_str = ["O", "I-PER", "I-PER", "B-PER", "O", "O", "I-LOC", "O", "O", "O"]
    assert ner.decode(as_str, f["word_ids"]) == ["I-PER", "I-PER", "O", "O", "I-LOC", "O"]
    with pytest.raises(ValueError, match="3 predictions for 10 positions"):
        ner.decode([0, 0, 0], f["word_ids"])
    with pytest.raises(ValueError, match="unknown tag"):
        ner.encode([{"tokens": ["he"], "tags": ["I-DATE"]}], tok, 8)


def test_evaluate_and_collate(tok) -> None:
    gold = [EMMA["tags"]]
    assert ner.evaluate([iob1_to_iob2(EMMA["tags"])], gold)["f1"] == 1.0
    half = ner.evaluate([["B-PER", "I-PER", "O", "O", "O", "O"]], gold)
    assert half == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    batch = ner.collate(ner.encode([EMMA, {"tokens": ["he"], "tags": ["O"]}], tok, 32))
    assert batch["input_ids"].shape == (2, 10)
    assert batch["labels"][1].tolist() == [ner.IGNORE, 0] + [ner.IGNORE] * 8


def test_roundtrip_on_eng_testa(bert_tok) -> None:
    path = SHARED / "conll2003" / "eng.testa"
    if not path.is_file():
        pytest.skip("eng.testa absent")
    sentences = read_conll2003(path)
    gold = [s["tags"] for s in sentences]
    assert len(sentences) == 3250
    for max_len, expect_cut in ((128, True), (256, False)):
        encoded = ner.encode(sentences, bert_tok, max_len)
        decoded = ner.decode_batch([f["labels"] for f in encoded], encoded)
        cut = ner.truncated_words(encoded)
        assert ner.dropped_words(encoded) == cut  # no word tokenizes to nothing in eng.testa
        assert (cut > 0) == expect_cut
        mismatched = 0
        for d, g, f in zip(decoded, gold, encoded, strict=True):
            keep = f["num_words"] - f["truncated_words"]
            assert d[:keep] == g[:keep]  # everything kept is exact
            assert set(d[keep:]) <= {"O"}
            mismatched += sum(a != b for a, b in zip(d[keep:], g[keep:], strict=True))
        if max_len == 128:
            # Measured (and cross-checked against untruncated word_ids): 3 sentences exceed 128
            # sub-tokens; 19 of their words are cut, 6 of them inside 3 PER entities.
            assert cut == 19 and sum(f["truncated_words"] > 0 for f in encoded) == 3
            assert mismatched == 6
            score = ner.evaluate(decoded, gold)
            assert score["precision"] == 1.0 and score["recall"] == pytest.approx(1 - 3 / 5942)
        else:
            assert ner.evaluate(decoded, gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


# ---------------------------------------------------------------- document context


def _doc(tokens_per_sentence: list[list[str]], document: int, start: int) -> list[dict]:
    return [
        {"tokens": t, "tags": ["O"] * len(t), "document": document, "index": start + i}
        for i, t in enumerate(tokens_per_sentence)
    ]


def test_a_sentence_is_encoded_inside_its_document_and_only_its_words_are_labelled(tok):
    emma = EMMA | {"index": 1}
    before, after = ["emma", "lived", "."], ["in", "highbury", "."]
    document = [*_doc([before], 0, 0), emma, *_doc([after], 0, 2), *_doc([["x"]], 1, 3)]
    context = ner.document_context([emma], document, tok)
    ids = lambda words: tok(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert context == [(ids(before), ids(after))]  # the other document is not context

    alone = ner.encode([emma], tok, 32)[0]
    inside = ner.encode([emma], tok, 32, context)[0]
    own = alone["input_ids"][1:-1]
    left, right = ids(before), ids(after)
    assert inside["input_ids"] == [tok.cls_token_id, *left, *own, *right, tok.sep_token_id]
    # labels and word ids exactly where the sentence's own tokens are, shifted by the context
    shift = len(left)
    assert inside["labels"] == [-100] * shift + alone["labels"][:-1] + [-100] * (len(right) + 1)
    assert [w for w in inside["word_ids"] if w is not None] == [
        w for w in alone["word_ids"] if w is not None
    ]
    # the gold labels read back through the word ids give the sentence's own tags
    tags = ner.decode(inside["labels"], inside["word_ids"], inside["num_words"])
    assert tags == EMMA["tags"]


def test_context_is_split_evenly_and_never_crowds_out_the_sentence(tok):
    emma = EMMA | {"index": 1}
    long = ["emma"] * 40
    document = [*_doc([long], 0, 0), emma, *_doc([long], 0, 2)]
    context = ner.document_context([emma], document, tok)
    feature = ner.encode([emma], tok, 16, context)[0]
    own = len(ner.encode([emma], tok, 64)[0]["input_ids"]) - 2
    assert len(feature["input_ids"]) == 16
    positions = [i for i, w in enumerate(feature["word_ids"]) if w is not None]
    left = positions[0] - 1
    right = 16 - 2 - own - left
    assert abs(left - right) <= 1 and feature["num_words"] == len(EMMA["tokens"])
