"""The benches run end to end on a tiny setting (their numbers are not asserted: no timed tests)."""

from __future__ import annotations

import re

import pytest
import torch

pytest.importorskip("accelerate")  # the HF Trainer baselines need it (the `bench` extra)

from bench import data, finetune, heldout, orchestration, pretrain, tracking  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

RATIO = r"(\d+\.\d+)x$"


def _last_ratio(out: str, label: str) -> float:
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(re.escape(label) + ": " + RATIO, last)
    assert match, last
    return float(match.group(1))


def test_finetune_bench_runs(capsys):
    finetune.main(
        ["--synthetic", "--train-examples", "64", "--dev-examples", "32", "--threads", "1"]
        + ["--seeds", "2"]
    )
    out = capsys.readouterr().out
    for name in ("bertabl", "hf-pad128", "hf-dyn"):
        accuracy = r"[01]\.\d{4} ± [01]\.\d{4}"
        assert re.search(rf"^{name} +best +\d+\.\d examples/s  dev accuracy {accuracy}$", out, re.M)
        assert len(re.findall(rf"^{name} +seed [01]: ", out, re.M)) == 2
    for name in ("hf-pad128", "hf-dyn"):
        spread = rf"^quality: dev accuracy bertabl - {name} = [+-]\d\.\d{{4}}, (beyond|within) "
        assert re.search(spread + r"the seed spread \(\d\.\d{4}, 2 seeds\)$", out, re.M)
    assert _last_ratio(out, "bertabl / hf-dyn (examples/s)") > 0


def test_pretrain_bench_runs(capsys):
    pretrain.main(
        ["--synthetic", "--steps", "2", "--batch-size", "8", "--threads", "1", "--seeds", "2"]
        + ["--eval-pairs", "16"]
    )
    out = capsys.readouterr().out
    # bertabl fills its pairs to the length limit; the baseline pads short pairs
    fills = [int(x) for x in re.findall(r"tokens, (\d+)% of the padded batch", out)]
    assert len(fills) == 4 and fills[0] > fills[1] and fills[2] > fills[3]
    # both models scored on the same held-out examples, per seed and over seeds
    held_out = r"held-out MLM loss \d+\.\d{4}, NSP accuracy [01]\.\d{4}$"
    assert len(re.findall(held_out, out, re.M)) == 4
    for metric in ("mlm_loss", "nsp_accuracy"):
        assert re.search(
            rf"^quality: held-out {metric} bertabl - hf = [+-]\d+\.\d{{4}}, ", out, re.M
        )
    assert _last_ratio(out, "bertabl / hf (non-padding tokens/s)") > 0


def test_token_counter_counts_the_attention_mask():
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
    )
    model = BertModel(config)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    counter = pretrain.TokenCounter()
    try:
        counter.reset(torch.device("cpu"))
        model.train()
        model(input_ids=torch.ones(2, 4, dtype=torch.long), attention_mask=mask)
        model(torch.ones(2, 4, dtype=torch.long), mask)  # positional, as some callers pass it
        model.eval()
        model(input_ids=torch.ones(2, 4, dtype=torch.long), attention_mask=mask)  # not training
        assert counter.total() == 2 * 5
    finally:
        counter.remove()
    assert BertModel.forward is not None and "counter" not in BertModel.forward.__code__.co_names


@pytest.mark.slow
def test_orchestration_bench_runs(capsys):
    orchestration.main(
        ["--steps", "4", "--train-examples", "64", "--epochs", "1", "--threads", "1"]
        + ["--repeats", "2"]
    )
    out = capsys.readouterr().out
    assert "re-run of the finished matrix (all trials skipped)" in out
    # interleaved: loop, run, loop, run, loop; each run against the loops either side of it
    assert out.count("plain loop script:") == 3 and out.count("bertabl run:") == 2
    assert len(re.findall(r"\d\.\d{3}x", out.split("ratios of the 2 runs:")[1])) >= 2
    assert _last_ratio(out, "bertabl run / plain loop script (wall)") > 0


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present")
def test_data_bench_runs(capfd):
    data.main(
        ["--sizes", "1", "2", "--steps", "2", "--pipeline-size", "1", "--pipeline-seconds", "0.2"]
        + ["--no-arrow"]
    )
    out = capfd.readouterr().out  # the parts run in processes of their own
    assert len(re.findall(r"^bertabl +[12]x .* peak RSS \d+\.\d+ GB", out, re.M)) == 2
    assert len(re.findall(r"^data pipeline, 1 core, seq_len (128|512)", out, re.M)) == 4
    assert re.search(r"^token store: .* MB/s", out, re.M)
    assert _last_ratio(out, "peak RSS 2x / 1x") > 0


def test_heldout_bench_runs(capsys):
    """One objective: each pass is a process of its own (~10 s of imports each)."""
    heldout.main(["--hidden", "32", "--vocab", "100", "--max-seq-len", "32", "--batch-size", "4"]
                 + ["--threads", "1", "--objectives", "mlm_nsp"])  # fmt: skip
    out = capsys.readouterr().out  # the passes' processes print their line; the bench repeats it
    losses = re.findall(r"^mlm_nsp +(?:dense|bertabl) +held-out loss (\d+\.\d+), peak "
                        r"\d+\.\d MB over the model and batch", out, re.M)  # fmt: skip
    assert len(losses) == 2 and float(losses[0]) == pytest.approx(float(losses[1]), rel=1e-5)
    # a tiny model's passes allocate next to nothing: the ratio is printed, not meaningful here
    assert _last_ratio(out, "dense / bertabl peak memory of the pass (mlm_nsp)") >= 0


def _detail(row: str, low: float | None, high: float | None) -> dict:
    ci = None if low is None else [low, high]
    return {"row_label": row, "column": "syn_chain (accuracy)", "mean": 0.8, "stalled": 1, "n": 5,
            "difference_ci": ci}  # fmt: skip


def test_demo_seeds_verdicts_and_agreement():
    from bench import demo_seeds

    verdicts: dict = {}
    first = {"details": [_detail("BERT", None, None), _detail("No NSP", -0.2, -0.1)]}
    second = {"details": [_detail("BERT", None, None), _detail("No NSP", -0.05, 0.01)]}
    lines = demo_seeds.cell_lines(first, verdicts) + demo_seeds.cell_lines(second, verdicts)
    assert len(lines) == 2  # the baseline row has no difference to itself
    assert lines[0].endswith("Δ 95% CI [-20.0, -10.0]  -") and lines[1].endswith("0")
    assert verdicts == {("No NSP", "syn_chain (accuracy)"): ["-", "0"]}
    assert demo_seeds.agreement_lines(verdicts)[1].endswith("- 0  NOT the same")
    assert demo_seeds.verdict(_detail("x", 0.01, 0.2)) == "+"


@pytest.mark.slow
def test_demo_seeds_runs_a_matrix_per_seed(tiny_matrix, tmp_path, capsys):
    from bench import demo_seeds

    demo_seeds.main(["--matrix", str(tiny_matrix), "--runs", str(tmp_path), "--seeds", "3"])
    out = capsys.readouterr().out
    assert out.startswith("seed 3: ") and "same at every seed" in out
    assert (tmp_path / "seed3" / "report").is_dir()


@pytest.mark.slow
def test_tracking_bench_runs(capsys):
    tracking.main(["--steps", "4", "--train-examples", "40", "--epochs", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    # off, on, off: the on run against the off runs either side of it
    assert out.count("tracking off:") == 2 and out.count("tracking on:") == 1
    assert re.search(
        r"^event files of the last run: 6$", out, re.M
    )  # 2 pre-training + 4 fine-tuning
    assert re.search(r"tensorboardX import \d+\.\d+ s .* \d+ results written in", out)
    assert _last_ratio(out, "tracking on / off (wall)") > 0
