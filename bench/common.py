"""Shared by the benches: the environment banner, a tiny-matrix builder, a saved tiny BERT.

The benches run bertabl and its Hugging Face baseline in one process on the same model, data and
seed. Trial configs come from a real matrix through `build_plan`, so bertabl runs exactly what a
`bertabl run` trial would.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import Any

import torch

from bertabl.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto = bf16 on GPUs with native bf16, else fp16; fp32 on CPU (bertabl's rule; "
        "the baseline gets the same)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use the synthetic suite even if shared data is here",
    )
    parser.add_argument("--seed", type=int, default=0)


def setup(args: argparse.Namespace) -> torch.device:
    """Quiet libraries, set threads, print the environment; returns the device."""
    from bertabl.orchestrate.rank import quiet_libraries

    device = torch.device(args.device)
    if device.type == "cuda":
        device = one_visible_gpu(device)
    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    print_environment(device)
    return device


def one_visible_gpu(device: torch.device) -> torch.device:
    """Make `device` the only GPU this process sees (before CUDA starts), as cuda:0. HF `Trainer`
    wraps its model in `DataParallel` over every visible GPU; bertabl's trial body uses one: the
    comparison must be one GPU against one."""
    if torch.cuda.is_initialized():  # a second bench in this process: the first chose
        if torch.cuda.device_count() != 1:
            raise RuntimeError(
                "bench: CUDA started with several GPUs visible; set one with CUDA_VISIBLE_DEVICES"
            )
        return torch.device("cuda", 0)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else None
    index = device.index or 0
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[index] if ids else str(index)
    return torch.device("cuda", 0)


def cuda_sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a clock read after it times what ran."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolved_precision(args: argparse.Namespace, device: torch.device) -> str:
    if args.precision != "auto":
        return args.precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def print_environment(device: torch.device) -> None:
    import transformers

    print(f"python {platform.python_version()} on {platform.platform()}")
    cores, threads = os.cpu_count(), torch.get_num_threads()
    print(f"cpu: {cpu_model()}, {cores} logical cores, torch threads {threads}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    else:
        print("device: cpu")


def use_shared(args: argparse.Namespace) -> bool:
    return not args.synthetic and SHARED_DATA.is_dir()


def data_section(shared: bool) -> dict[str, Any]:
    """Gutenberg + BERT's WordPiece vocabulary + local GLUE when ../shared/data is here."""
    if not shared:
        return {"corpus": "synthetic", "tokenizer": "synthetic"}
    return {
        "corpus": str(SHARED_DATA / "corpus" / "gutenberg"),
        "corpus_format": "paragraphs",
        "tokenizer": str(SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt"),
        "glue_dir": str(SHARED_DATA / "glue"),
    }


def model_section(layers: int, hidden: int) -> dict[str, Any]:
    return {
        "layers": layers,
        "hidden": hidden,
        "heads": max(1, hidden // 64),
        "intermediate": 4 * hidden,
        "max_position": 512,
    }


def build(raw: dict[str, Any]):
    """The Plan of a matrix given as a dict (validated like a TOML file)."""
    from bertabl.matrix.load import validate
    from bertabl.matrix.plan import build_plan

    return build_plan(validate(raw, origin="bench"), origin="bench")


def save_initial_model(pretrain_config, directory: Path) -> Path:
    """A freshly initialised (seeded) pre-training model + tokenizer, saved as a checkpoint
    folder: what fine-tuning loads. Speed does not depend on the weights' values."""
    from bertabl.data.tokenizer import build_tokenizer
    from bertabl.pretrain.objectives import OBJECTIVES

    pt = pretrain_config.pretrain
    tokenizer = build_tokenizer(pretrain_config.data, directory / "vocab")
    torch.manual_seed(pt.seed)
    model = OBJECTIVES[pt.objective].build_model(pt.model, len(tokenizer), tokenizer.pad_token_id)
    model.save_pretrained(directory / "model")
    tokenizer.save_pretrained(directory / "model")
    return directory / "model"


def ratio_line(name: str, ours: float, theirs: float) -> str:
    return f"{name}: {ours / theirs:.2f}x"


def quality_line(what: str, ours: str, a: list[float], theirs: str, b: list[float]) -> str:
    """Whether two runs' scores over the same seeds differ by more than the seed spread: the
    difference of their means against the larger of their standard deviations (a speed ratio
    compares like with like only when it does not)."""
    import statistics

    difference = statistics.fmean(a) - statistics.fmean(b)
    spread = max(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (a, b))
    verdict = "beyond" if abs(difference) > spread else "within"
    return (
        f"quality: {what} {ours} - {theirs} = {difference:+.4f}, {verdict} the seed spread "
        f"({spread:.4f}, {len(a)} seeds)"
    )
