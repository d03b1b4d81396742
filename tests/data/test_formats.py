"""Parsers for the original dataset formats: real shared files, hand-written fixtures, bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bertabl.data.formats import (
    CONLL_LABELS,
    GLUE_TASKS,
    load_squad_json,
    read_conll2003,
    read_glue,
    read_squad,
    read_swag,
)
from bertabl.errors import DataError
from tests.conftest import FIXTURES as TEST_FIXTURES
from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA
FIXTURES = TEST_FIXTURES / "formats"


@pytest.fixture(scope="module")
def shared() -> Path:
    if not (SHARED / "MANIFEST.md").is_file():
        pytest.skip(f"shared data not present at {SHARED}")
    return SHARED


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def data_error(fn, *args) -> str:
    with pytest.raises(DataError) as info:
        fn(*args)
    return str(info.value)


# ---------------------------------------------------------------- real files (MANIFEST counts)


def test_sst2_real(shared: Path) -> None:
    train = read_glue("sst2", shared / "glue" / "SST-2", "train")
    dev = read_glue("SST-2", shared / "glue", "dev")  # GLUE root + folder-style name also work
    assert (len(train), len(dev)) == (67_349, 872)
    assert Counter(e["label"] for e in train) == {0: 29_780, 1: 37_569}
    # Text is kept byte-for-byte, including GLUE's trailing space.
    assert train[0] == {
        "text_a": "hide new secretions from the parental units ",
        "text_b": None,
        "label": 0,
    }
    assert dev[0]["text_a"] == "it 's a charming and often affecting journey . "
    assert dev[0]["label"] == 1


def test_mrpc_real(shared: Path) -> None:
    train = read_glue("mrpc", shared / "glue", "train")
    dev = read_glue("mrpc", shared / "glue", "dev")
    assert (len(train), len(dev)) == (3_668, 408)
    assert train[0] == {
        "text_a": 'Amrozi accused his brother, whom he called "the witness", of deliberately '
        "distorting his evidence.",
        "text_b": 'Referring to him as only "the witness", Amrozi accused his brother of '
        "deliberately distorting his evidence.",
        "label": 1,
    }
    # An opening quote that is never closed: CSV quoting would swallow the following lines.
    assert (
        dev[0]["text_b"] == '"The foodservice pie business does not fit our long-term growth '
        "strategy."
    )
    assert Counter(e["label"] for e in dev) == {1: 279, 0: 129}


def test_cola_real(shared: Path) -> None:
    train = read_glue("cola", shared / "glue", "train")
    dev = read_glue("cola", shared / "glue", "dev")
    assert (len(train), len(dev)) == (8_551, 1_043)
    assert train[0] == {
        "text_a": "Our friends won't buy this analysis, let alone the next one we propose.",
        "text_b": None,
        "label": 1,
    }
    assert dev[-1]["text_a"] == "John talked to Bill about himself."  # no final newline


def test_rte_qnli_real(shared: Path) -> None:
    rte = read_glue("rte", shared / "glue", "dev")
    assert len(rte) == 277
    assert rte[0]["text_b"] == "Christopher Reeve had an accident."
    assert rte[0]["label"] == 1  # not_entailment
    qnli = read_glue("qnli", shared / "glue", "dev")
    assert len(qnli) == 5_463
    assert Counter(e["label"] for e in qnli) == {0: 2_702, 1: 2_761}
    assert qnli[0]["text_a"] == "What came into force after the new constitution was herald?"
    assert qnli[0]["label"] == 0


def test_stsb_real(shared: Path) -> None:
    dev = read_glue("stsb", shared / "glue", "dev")
    assert len(dev) == 1_500
    assert all(isinstance(e["label"], float) and 0.0 <= e["label"] <= 5.0 for e in dev)
    assert dev[0] == {
        "text_a": "A man with a hard hat is dancing.",
        "text_b": "A man wearing a hard hat is dancing.",
        "label": 5.0,
    }
    assert dev[1]["label"] == 4.75


def test_conll_real(shared: Path) -> None:
    testa = read_conll2003(shared / "conll2003" / "eng.testa")
    assert len(testa) == 3_250
    assert len({s["document"] for s in testa}) == 216
    train = read_conll2003(shared / "conll2003" / "eng.train")
    assert len(train) == 14_041
    assert [s["document"] for s in (train[0], train[-1])] == [0, 945]
    assert sum(len(s["tokens"]) for s in train) == 203_621
    # IOB1 kept as-is: the first entity starts with I-, and B- is rare.
    assert train[0]["tokens"][:3] == ["EU", "rejects", "German"]
    assert train[0]["tags"][:3] == ["I-ORG", "O", "I-MISC"]
    tags = Counter(t for s in train for t in s["tags"])
    assert tags["B-MISC"] == 37
    assert set(tags) <= set(CONLL_LABELS)


def test_squad_v11_real(shared: Path) -> None:
    path = shared / "squad" / "dev-v1.1.json"
    examples = read_squad(path)
    assert len(examples) == 10_570
    assert len({e["id"] for e in examples}) == 10_570
    first = examples[0]
    assert first["id"] == "56be4db0acb8001400a502ec"
    assert first["title"] == "Super_Bowl_50"
    assert first["question"] == "Which NFL team represented the AFC at Super Bowl 50?"
    assert first["answers"] == {"text": ["Denver Broncos"] * 3, "answer_start": [177] * 3}
    assert not any(e["is_impossible"] for e in examples)
    raw = load_squad_json(path)
    assert len(raw) == 48
    assert sum(len(a["paragraphs"]) for a in raw) == 2_067


# ---------------------------------------------------------------- hand-written fixtures


def test_glue_task_table() -> None:
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert GLUE_TASKS["mnli"].labels == ("entailment", "neutral", "contradiction")
    assert GLUE_TASKS["stsb"].labels == "regression"
    assert not GLUE_TASKS["cola"].header


def test_mnli_fixture() -> None:
    train = read_glue("mnli", FIXTURES / "glue", "train")
    assert [e["label"] for e in train] == [1, 0, 2]
    assert train[0]["text_b"] == "Product and geography are what make cream skimming work. "
    assert train[2]["text_a"] == 'He said, "We\'re done here," and walked out.'
    matched = read_glue("mnli", FIXTURES / "glue" / "MNLI", "dev_matched")
    assert read_glue("mnli", FIXTURES / "glue", "dev") == matched  # "dev" = dev_matched
    assert matched[0] == {
        "text_a": "The new rights are nice enough",
        "text_b": "Everyone really likes the newest benefits ",
        "label": 1,
    }
    # Row 2: label1 says entailment, gold_label (the last column) says neutral.
    assert matched[2] == {
        "text_a": '"I\'m not going," she said.',
        "text_b": "She stayed home.",
        "label": 1,
    }
    mismatched = read_glue("mnli", FIXTURES / "glue", "dev_mismatched")
    assert [e["label"] for e in mismatched] == [2, 0]
    assert mismatched[1]["text_a"] == "The FAA was notified."


def test_qqp_fixture() -> None:
    dev = read_glue("qqp", FIXTURES / "glue", "dev")
    assert [e["label"] for e in dev] == [0, 0, 1, 1]
    # Quotes are text, not CSV quoting: kept, and an unbalanced one does not eat the tab.
    assert dev[1]["text_b"].startswith('"I handle social media') and dev[1]["text_b"][-1] == '"'
    assert dev[3] == {
        "text_a": '"Why is the 12" sub so loud?',
        "text_b": 'Why are 12" subwoofers so loud?',
        "label": 1,
    }


def test_wnli_fixture() -> None:
    train = read_glue("wnli", FIXTURES / "glue", "train")
    assert [e["label"] for e in train] == [1, 1, 1, 0, 0]
    assert train[0]["text_b"] == "The carrot had a hole."
    assert train[4]["text_a"] == 'Sam said "no" to Amy because she asked him too late.'


def test_squad_v2_fixture() -> None:
    examples = read_squad(FIXTURES / "squad" / "dev-v2.0-mini.json")
    assert [e["is_impossible"] for e in examples] == [False, False, False, True, False, True]
    assert examples[1]["answers"] == {
        "text": ["10th and 11th centuries", "in the 10th and 11th centuries"]
        + ["10th and 11th centuries"] * 2,
        "answer_start": [94, 87, 94, 94],
    }
    unanswerable = examples[3]
    assert unanswerable["id"] == "5ad39d53604f3c001a3fe8d1"
    assert unanswerable["answers"] == {"text": [], "answer_start": []}
    # Offsets count characters, not UTF-8 bytes (the en dash is 3 bytes).
    assert examples[4]["answers"] == {"text": ["24\u201310"], "answer_start": [138]}
    assert examples[4]["title"] == "Super_Bowl_50"


def test_swag_fixture() -> None:
    examples = read_swag(FIXTURES / "swag" / "val.csv")
    assert examples[0] == {
        "context": "Students lower their eyes nervously.",
        "start": "She",
        "endings": [
            "pats her shoulder, then saunters toward someone.",
            "turns with two students.",
            "walks slowly towards someone.",
            "wheels around as her dog thunders out.",
        ],
        "label": 2,
    }
    assert examples[1]["endings"][1] == (
        "stops, listening to a cup of coffee with the seated woman, who's standing."
    )
    assert examples[2]["context"] == 'Someone holds up a sign reading "Welcome home".'
    assert examples[2]["endings"][0] == 'shouts, "Surprise!"'
    assert examples[2]["label"] == 0


def test_conll_crlf_and_documents(tmp_path: Path) -> None:
    path = write(
        tmp_path / "eng.mini",
        (
            "-DOCSTART- -X- O O\n\n"
            "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n"
            "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"
            "-DOCSTART- -X- O O\n\n"
            "Germany NNP I-NP I-LOC\nand CC O O\nFrance NNP I-NP B-LOC\n\n\n"
        ),
        newline="\r\n",
    )
    assert read_conll2003(path) == [
        {"tokens": ["EU", "rejects"], "tags": ["I-ORG", "O"], "document": 0},
        {"tokens": ["Peter", "Blackburn"], "tags": ["I-PER", "I-PER"], "document": 0},
        {"tokens": ["Germany", "and", "France"], "tags": ["I-LOC", "O", "B-LOC"], "document": 1},
    ]


# ---------------------------------------------------------------- malformed input


def test_glue_wrong_column_count(tmp_path: Path) -> None:
    rows = ["sentence\tlabel"] + [f"fine sentence {i} .\t1" for i in range(15)]
    write(tmp_path / "SST-2" / "dev.tsv", "\n".join([*rows, "a\ttab inside\t0", "ok\t1"]) + "\n")
    msg = data_error(read_glue, "sst2", tmp_path, "dev")
    assert (
        "SST-2/dev.tsv line 17: expected 2 tab-separated columns (sentence, label), found 3" in msg
    )


def test_glue_unknown_label(tmp_path: Path) -> None:
    write(
        tmp_path / "RTE" / "dev.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tA.\tB.\tcontradiction\n",
    )
    msg = data_error(read_glue, "rte", tmp_path / "RTE", "dev")
    assert "dev.tsv line 3" in msg and "'contradiction'" in msg and "not_entailment" in msg


def test_glue_bad_score_and_blank_line(tmp_path: Path) -> None:
    header = "\t".join(
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ]
    )
    row = "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA.\tB.\t{}"
    write(
        tmp_path / "STS-B" / "dev.tsv",
        "\n".join([header, row.format("5.000"), row.format("6.5")]) + "\n",
    )
    msg = data_error(read_glue, "stsb", tmp_path, "dev")
    assert "dev.tsv line 3" in msg and "[0, 5]" in msg and "'6.5'" in msg
    write(tmp_path / "STS-B" / "dev.tsv", "\n".join([header, "", row.format("1.0")]) + "\n")
    assert "dev.tsv line 2: expected 10 tab-separated columns" in data_error(
        read_glue, "stsb", tmp_path, "dev"
    )


def test_glue_missing_file_header_and_empty(tmp_path: Path) -> None:
    msg = data_error(read_glue, "qnli", tmp_path, "train")
    assert "train.tsv: file not found" in msg and "QNLI/" in msg
    write(tmp_path / "QNLI" / "train.tsv", "")
    assert "train.tsv: empty file" in data_error(read_glue, "qnli", tmp_path, "train")
    write(tmp_path / "QNLI" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t0\n")
    msg = data_error(read_glue, "qnli", tmp_path, "train")
    assert "train.tsv line 1: header lacks column(s) 'question', 'sentence'" in msg
    write(tmp_path / "CoLA" / "train.tsv", "")
    assert "train.tsv: no examples" in data_error(read_glue, "cola", tmp_path, "train")


def test_glue_unknown_task_and_split(tmp_path: Path) -> None:
    msg = data_error(read_glue, "squad", tmp_path, "dev")
    assert "unknown GLUE task 'squad'" in msg and "mnli" in msg and "wnli" in msg
    msg = data_error(read_glue, "mnli", tmp_path, "test")
    assert "no split 'test'" in msg and "dev_mismatched" in msg


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "SST-2" / "train.tsv"
    path.parent.mkdir()
    path.write_bytes(b"sentence\tlabel\nok\t1\nbad \xff byte\t0\n")
    assert "train.tsv line 3: not valid UTF-8" in data_error(read_glue, "sst2", tmp_path, "train")


def test_conll_malformed(tmp_path: Path) -> None:
    path = write(tmp_path / "eng.bad", "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ O\n")
    assert (
        "eng.bad line 4: expected 4 space-separated fields (word POS chunk NER), found 3"
        in data_error(read_conll2003, path)
    )
    write(path, "EU NNP I-NP I-ORG\nrejects VBZ I-VP B-VERB\n")
    msg = data_error(read_conll2003, path)
    assert "eng.bad line 2: unknown NER tag 'B-VERB'" in msg
    write(path, "")
    assert "eng.bad: no sentences found" in data_error(read_conll2003, path)
    assert "eng.nope: file not found" in data_error(read_conll2003, tmp_path / "eng.nope")


def _squad(tmp_path: Path, edit) -> Path:
    data = json.loads((FIXTURES / "squad" / "dev-v2.0-mini.json").read_text(encoding="utf-8"))
    edit(data["data"])
    return write(tmp_path / "train-v2.0.json", json.dumps(data))


def test_squad_bad_json_and_missing(tmp_path: Path) -> None:
    path = write(tmp_path / "dev-v1.1.json", '{"version": "1.1",\n "data": [}\n')
    msg = data_error(read_squad, path)
    assert "dev-v1.1.json line 2 column" in msg and "invalid JSON" in msg
    write(path, "")
    assert "dev-v1.1.json line 1 column 1: invalid JSON" in data_error(read_squad, path)
    write(path, '{"version": "1.1"}')
    assert "dev-v1.1.json: top level" in data_error(load_squad_json, path)
    assert "dev-v2.0.json: file not found" in data_error(read_squad, tmp_path / "dev-v2.0.json")


def test_squad_structure_errors(tmp_path: Path) -> None:
    path = _squad(tmp_path, lambda d: d[1]["paragraphs"][0]["qas"][0].pop("question"))
    assert "train-v2.0.json: data[1].paragraphs[0].qas[0]: missing 'question'" in data_error(
        read_squad, path
    )

    def string_offset(d):
        d[0]["paragraphs"][0]["qas"][2]["answers"][1]["answer_start"] = "256"

    msg = data_error(read_squad, _squad(tmp_path, string_offset))
    assert "data[0].paragraphs[0].qas[2].answers[1].answer_start: expected an integer" in msg

    def impossible_with_answer(d):
        d[0]["paragraphs"][0]["qas"][3]["answers"] = [{"text": "Normans", "answer_start": 4}]

    msg = data_error(read_squad, _squad(tmp_path, impossible_with_answer))
    assert "data[0].paragraphs[0].qas[3]" in msg and "is_impossible" in msg


def test_squad_answer_start_mismatch(tmp_path: Path) -> None:
    def shift(d):
        d[0]["paragraphs"][0]["qas"][0]["answers"][2]["answer_start"] = 158

    msg = data_error(read_squad, _squad(tmp_path, shift))
    assert "train-v2.0.json: data[0].paragraphs[0].qas[0].answers[2]: answer_start 158" in msg
    assert "'56ddde6b9a695914005b9628'" in msg and "' Franc'" in msg


def test_swag_malformed(tmp_path: Path) -> None:
    header = FIXTURES.joinpath("swag", "val.csv").read_text(encoding="utf-8").splitlines()[0]
    good = '0,v,1,"A\nmultiline. She","A\nmultiline.",She,gold,a,b,c,d,1'  # lines 2-4
    path = write(tmp_path / "val.csv", f"{header}\n{good}\n1,v,1,A. He,A.,He,gold,a,b,c,d,4\n")
    assert (
        "val.csv line 5: label must be 0, 1, 2 or 3 (the index of the correct ending), found '4'"
    ) in data_error(read_swag, path)
    write(path, f"{header}\n{good}\n1,v,1,A. He,A.,He,gold,a,b,c,1\n")
    assert "val.csv line 5: expected 12 comma-separated fields" in data_error(read_swag, path)
    write(path, f'{header}\n1,v,1,A. He,A.,He,gold,"a"x,b,c,d,1\n')
    assert "val.csv line 2: malformed CSV" in data_error(read_swag, path)
    write(path, "")
    assert "val.csv: empty file" in data_error(read_swag, path)
    write(path, header.rsplit(",", 1)[0] + "\n0,v,1,A. He,A.,He,gold,a,b,c,d\n")
    assert "(test.csv has no labels)" in data_error(read_swag, path)
