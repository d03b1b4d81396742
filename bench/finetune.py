"""Fine-tuning speed: bertabl's trial body vs Hugging Face `Trainer`, same model, data and seed.

    python bench/finetune.py                      # SST-2 from ../shared/data (else synthetic)
    python bench/finetune.py --device cuda        # bf16 on a GPU

Three runs of one epoch (by default) over the same training examples, each followed by a dev
evaluation, from the same saved tiny BERT (2 layers x 128, random init, seeded):
  bertabl   `bertabl.finetune.epoch_loop.finetune` (dynamic padding, length-grouped batches)
  hf-pad128 `Trainer`, every example padded to max_seq_len (the classic run_glue setup)
  hf-dyn    `Trainer` + `DataCollatorWithPadding` + train_sampling_strategy="group_by_length"
Throughput = training examples / seconds of (training + per-epoch dev evaluation); tokenising
and model loading are outside the timed part for all three. No checkpoints are written.

Each run is repeated for `--seeds` seeds (round-robin, so a slow spell of a shared machine
falls on every run alike); the seed sets the model's initialisation, the head's and the data
order, the same on every side. Speed is each run's best; quality is the dev accuracy's mean ±
std over the seeds, and the bench says whether bertabl's differs from each baseline's by more
than the seed spread (a speed ratio means little between models of different quality). The
last line is bertabl's throughput over hf-dyn's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import (
    add_common_args,
    build,
    data_section,
    model_section,
    quality_line,
    ratio_line,
    resolved_precision,
    save_initial_model,
    setup,
    use_shared,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--train-examples", type=int, default=8000, help="0 = the whole split")
    parser.add_argument("--dev-examples", type=int, default=0, help="0 = the whole split")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per run (seed, seed+1, ...)")
    parser.add_argument(
        "--only", nargs="*", default=["bertabl", "hf-pad128", "hf-dyn"], help="runs to do"
    )
    args = parser.parse_args(argv)
    device = setup(args)
    precision = resolved_precision(args, device)
    task = _plan(args, args.seed)[1]
    print(
        f"task {task}: {args.train_examples or 'all'} train examples, {args.epochs} epoch(s), "
        f"batch {args.batch_size}, lr {args.learning_rate}, max_seq_len {args.max_seq_len}, "
        f"model {args.layers}x{args.hidden}, precision {precision}, "
        f"seeds {args.seed}..{args.seed + args.seeds - 1}"
    )
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        # Round-robin over seeds: on a shared machine the load changes over time; each run's
        # best is the one least slowed by other processes.
        for seed in range(args.seed, args.seed + args.seeds):
            plan = _plan(args, seed)[0]
            config = plan.finetune[0].config
            pretrained = save_initial_model(plan.pretrain[0].config, Path(tmp) / f"init-{seed}")
            for name in args.only:
                examples, seconds, accuracy = _run(name, config, pretrained, Path(tmp), device,
                                                   precision)  # fmt: skip
                runs[name].append((examples / seconds, accuracy))
                print(
                    f"{name:10s} seed {seed}: {examples / seconds:8.1f} examples/s "
                    f"({examples} in {seconds:.2f} s)  dev accuracy {accuracy:.4f}"
                )
    best = {name: max(r[0] for r in results) for name, results in runs.items()}
    quality = {name: [r[1] for r in results] for name, results in runs.items()}
    for name in runs:
        print(
            f"{name:10s} best {best[name]:8.1f} examples/s  dev accuracy {_mean_std(quality[name])}"
        )
    if "bertabl" in quality:
        for name in quality.keys() - {"bertabl"}:
            print(quality_line("dev accuracy", "bertabl", quality["bertabl"], name, quality[name]))
    for ours, theirs in [("hf-dyn", "hf-pad128"), ("bertabl", "hf-pad128"), ("bertabl", "hf-dyn")]:
        if ours in best and theirs in best:
            print(ratio_line(f"{ours} / {theirs} (examples/s)", best[ours], best[theirs]))


def _run(name: str, config, pretrained: Path, tmp: Path, device, precision: str):
    if name == "bertabl":
        return _bertabl(config, pretrained, tmp, device, precision)
    return _hf(config, pretrained, tmp, device, precision, dynamic=name == "hf-dyn")


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def _plan(args, seed: int):
    shared = use_shared(args)
    task = "sst2" if shared else "syn_agree"
    raw = {
        "name": "bench-finetune",
        "data": data_section(shared),
        "pretrain": {
            "model": model_section(args.layers, args.hidden) | {"dropout": 0.1},
            "seed": seed,
        },
        "finetune": {
            "tasks": [task],
            "restarts": 1,
            "seed": seed,  # restart 0's seed: data order and head init
            "max_seq_len": args.max_seq_len,
            "grid": {
                "batch_size": [args.batch_size],
                "learning_rate": [args.learning_rate],
                "epochs": [args.epochs],
            },
        },
    }
    if shared:
        raw["data"]["tasks"] = {
            "sst2": {
                "max_train_examples": args.train_examples,
                "max_dev_examples": args.dev_examples,
            }
        }
    else:
        raw["data"]["synthetic"] = {
            "train_examples": args.train_examples or 8000,
            "dev_examples": args.dev_examples or 500,
        }
    return build(raw), task


def _bertabl(config, pretrained: Path, tmp: Path, device, precision: str):
    from bertabl.finetune.epoch_loop import finetune
    from bertabl.training import TrialRuntime

    reports: list[dict] = []
    runtime = TrialRuntime(device, report=lambda m: reports.append(m), precision=precision)
    metrics = finetune(config, pretrained, tmp / "bertabl", runtime)
    examples = _train_size(config) * config.epochs
    # The body's "seconds" run from after tokenising and loading to the last dev evaluation.
    return examples, reports[-1]["seconds"], metrics["dev_accuracy"]


def _train_size(config) -> int:
    from bertabl.tasks.catalogue import spec_of
    from bertabl.tasks.sources import load_split

    return len(load_split(spec_of(config.task, config.task_data), "train", config.task_data))


def _hf(config, pretrained: Path, tmp: Path, device, precision: str, dynamic: bool):
    from transformers import (
        AutoTokenizer,
        BertForSequenceClassification,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from bertabl.tasks.catalogue import spec_of
    from bertabl.tasks.sources import load_split

    spec = spec_of(config.task, config.task_data)
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    padding = False if dynamic else "max_length"

    def encode(split: str):
        data = load_split(spec, split, config.task_data)
        pair = "text_b" in data.column_names

        def tokenize(batch):
            texts = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
            return tokenizer(
                *texts, truncation=True, max_length=config.max_seq_len, padding=padding
            )

        removed = [c for c in data.column_names if c != "label"]
        return data.map(tokenize, batched=True, remove_columns=removed)

    train, dev = encode("train"), encode("dev")
    torch.manual_seed(config.seed)
    model = BertForSequenceClassification.from_pretrained(pretrained, num_labels=spec.num_labels)
    steps = -(-len(train) // config.batch_size) * config.epochs
    args = TrainingArguments(
        output_dir=str(tmp / ("hf-dyn" if dynamic else "hf-pad")),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        weight_decay=config.weight_decay,
        warmup_steps=int(round(config.warmup_fraction * steps)),
        adam_epsilon=1e-6,  # BERT's (and bertabl's); the rest are Trainer defaults
        max_grad_norm=1.0,
        train_sampling_strategy="group_by_length" if dynamic else "random",
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=config.seed,
        use_cpu=device.type == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=device.type == "cuda",
    )

    def accuracy(prediction) -> dict[str, float]:
        return {
            "accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))
        }

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator,
        compute_metrics=accuracy,
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps in a printer of every log
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    evals = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    return len(train) * config.epochs, seconds, evals[-1]["eval_accuracy"]


if __name__ == "__main__":
    main()
