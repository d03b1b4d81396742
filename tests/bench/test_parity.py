"""bench/parity runs every family end to end on a tiny setting (its numbers are not asserted: no
timed tests), and refuses clearly when the packaged checkpoint is absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")  # the Trainer side needs it (the `bench` extra)

from tests.conftest import SHARED_DATA  # noqa: E402

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


def _tiny_bert(folder: Path) -> Path:
    """A random 2 x 32 BERT with BERT's uncased vocabulary, as save_pretrained writes it."""
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    tokenizer = BertTokenizerFast(
        vocab_file=str(SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt"), do_lower_case=True
    )
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)  # fmt: skip
    torch.manual_seed(0)
    BertForPreTraining(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_parity_bench_runs_every_family(tmp_path, capsys):
    from bench.parity.__main__ import main

    model = _tiny_bert(tmp_path / "tiny")
    main(["--model", str(model), "--seeds", "2", "--train-examples", "24", "--dev-examples", "16",
          "--epochs", "1", "--threads", "1", "--json", str(tmp_path / "parity.json")])  # fmt: skip
    out = capsys.readouterr().out
    for task in ("sst2", "mrpc", "stsb", "conll2003", "squad_v1", "swag"):
        for side in ("bertabl", "trainer"):
            assert len(re.findall(rf"^  seed [01] {side} ", out, re.M)) >= 2
        assert re.search(rf"^\| \w+ \| {task} \| \w+ \| -?\d+\.\d ± \d+\.\d \| ", out, re.M), task
    assert re.search(r"^parity: [0-6] of 6 cases agree; wall bertabl / Trainer: \d+\.\d\dx$",
                     out.strip().splitlines()[-1])  # fmt: skip
    import json

    results = json.loads((tmp_path / "parity.json").read_text())
    assert [r["task"] for r in results] == ["sst2", "mrpc", "stsb", "conll2003", "squad_v1", "swag"]
    assert all(len(r["bertabl"]) == len(r["trainer"]) == 2 for r in results)


def test_without_the_checkpoint_it_says_which_extra(monkeypatch):
    from bench.parity.__main__ import main
    from bertabl.data import packaged_models

    absent = packaged_models.PackagedModel(
        "x", "no-such-dist-xyz", "no_such_xyz", "m.zip", "minilm"
    )
    monkeypatch.setitem(packaged_models.PACKAGED, "all-MiniLM-L6-v2", absent)
    with pytest.raises(SystemExit, match=r"bench.parity: package:all-MiniLM-L6-v2 needs the PyPI "
                       r"package no-such-dist-xyz.*'\.\[minilm\]'"):  # fmt: skip
        main(["--cases", "sst2"])
