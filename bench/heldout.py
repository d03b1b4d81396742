"""Peak memory of the held-out perplexity pass: bertabl's (the vocabulary decoded at the predicted
positions only, in chunks) vs the dense pass it replaced (every position's logits).

One held-out batch (default 32 x 512 tokens, all real) through a freshly initialised model of
BERT-Base's width and vocabulary (hidden 768, 12 heads, 30,522 words; `--layers` 1 by default:
the encoder's depth changes the activations both passes hold, not the logits), for the masked LM
with NSP and the left-to-right LM. Each (objective, pass) runs in its own process, so its peak
is its own: peak RSS on the CPU (over the RSS once the model and batch are built), peak
allocated memory on a GPU. Both passes print their held-out loss: the same to float32 rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.common import REPO, add_common_args, ratio_line, setup
from bertabl.training import IGNORE_INDEX

OBJECTIVES = ("mlm_nsp", "ltr")
PASSES = ("dense", "bertabl")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--objectives", nargs="*", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--child", nargs=2, metavar=("OBJECTIVE", "PASS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args, *args.child)
        return
    setup(args)
    print(
        f"held-out pass: {args.batch_size} x {args.max_seq_len} tokens, model {args.layers}x"
        f"{args.hidden}, vocabulary {args.vocab}, device {args.device}"
    )
    settings = ("device", "threads", "seed", "layers", "hidden", "vocab", "batch_size")
    forwarded = [x for k in settings for x in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]
    forwarded += ["--max-seq-len", str(args.max_seq_len)]
    peaks: dict[tuple[str, str], float] = {}
    for objective in args.objectives:
        for name in PASSES:
            command = [sys.executable, "-m", "bench.heldout", *forwarded]
            command += ["--child", objective, name]
            out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
            line = out.stdout.strip().splitlines()[-1]
            print(line)
            peaks[(objective, name)] = float(line.split("peak ")[1].split(" MB")[0])
    for objective in args.objectives:
        print(
            ratio_line(
                f"dense / bertabl peak memory of the pass ({objective})",
                peaks[(objective, "dense")],
                max(peaks[(objective, "bertabl")], 0.1),  # MB, as printed
            )
        )


def _child(args: argparse.Namespace, objective: str, name: str) -> None:
    from bertabl.pretrain.objectives import OBJECTIVES as ADAPTERS
    from bertabl.pretrain.perplexity import heldout_metrics
    from bertabl.trial.pretrain import ModelConfig

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    adapter = ADAPTERS[objective]
    torch.manual_seed(args.seed)
    shape = ModelConfig(
        layers=args.layers, hidden=args.hidden, heads=max(1, args.hidden // 64),
        max_position=args.max_seq_len,
    )  # fmt: skip
    model = adapter.build_model(shape, args.vocab, 0).to(device).eval()
    batch = _batch(args, adapter)
    if device.type == "cuda":
        batch = {k: v.to(device) for k, v in batch.items()}
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _rss_from_now()
    started = time.perf_counter()
    if name == "dense":
        loss = _dense(model, batch, adapter.nsp)
    else:
        metrics = heldout_metrics(model, [batch], objective, device, contextlib.nullcontext)
        loss = metrics["heldout_loss"]
    seconds = time.perf_counter() - started
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = _peak_rss() - before
    print(
        f"{objective:8s} {name:8s} held-out loss {loss:.6f}, peak {peak / 1e6:.1f} MB over "
        f"the model and batch, {seconds:.1f} s"
    )


def _batch(args: argparse.Namespace, adapter) -> dict[str, torch.Tensor]:
    """Full-length pairs of random tokens; 15% masked (MLM) or every next token (LTR)."""
    gen = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, args.max_seq_len)
    ids = torch.randint(5, args.vocab, shape, generator=gen)
    labels = torch.where(torch.rand(shape, generator=gen) < 0.15, ids, IGNORE_INDEX)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "labels": labels if adapter.masks else adapter.targets(ids),
        "next_sentence_label": torch.zeros(args.batch_size, dtype=torch.long),
    }


@torch.no_grad()
def _dense(model: torch.nn.Module, batch: dict[str, torch.Tensor], nsp: bool) -> float:
    """The held-out loss as bertabl computed it before (pretrain/perplexity.py until issue 29)."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    out = model(**inputs)
    logits = out.prediction_logits if nsp else out.logits
    nll = torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1),
        batch["labels"].flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    ).item()
    return nll / int((batch["labels"] != IGNORE_INDEX).sum())


def _rss_from_now() -> int:
    """This process's resident set size in bytes, its peak reset to it (Linux: clear_refs 5
    resets VmHWM), so `_peak_rss` measures what follows, not the imports' transient peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024
    except OSError:  # not Linux: the lifetime peak so far
        return _peak_rss()


def _peak_rss() -> int:
    """This process's peak resident set size in bytes (since `_rss_from_now` on Linux)."""
    try:
        return _status_kib("VmHWM") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


if __name__ == "__main__":
    main()
