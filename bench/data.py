"""Pre-training data at scale: memory of a whole run as the corpus grows, and the data path's speed.

    python -m bench.data                       # Gutenberg x1, x10, x40 (needs ../shared/data)
    python -m bench.data --baseline /tmp/old   # the same runs with the bertabl package in /tmp/old

1. Peak memory of the whole `bertabl run --stage pretrain` process tree (the CLI driver, Ray's
   processes, the trial worker), sampled every 0.1 s from /proc, at 1x, 10x and 40x the Gutenberg
   books of ../shared/data (copies of its six files, each copy with a distinct first line so
   every copy is new text). The matrix: one MLM+NSP trial, a 2 x 128 model, BERT's vocabulary,
   30 steps of 32 x 128 tokens, a fresh run directory each time (so the data preparation step is
   part of the run measured). It prints the peak sums over the tree of RSS (pages of the token
   store that several processes map count once per process), PSS (shared pages split between
   the processes mapping them) and anonymous memory (RSS less file pages: what the kernel cannot
   reclaim). Headline: peak RSS at the largest size / at 1x.
2. The data pipeline on one core (the process pinned to one CPU, one torch thread): pairs +
   masking + collation (`pretrain.batches.rank_steps`, one rank, no prefetch thread) over the
   10x store, batches of 256 pairs at 128 and at 512 tokens, in non-padding tokens/s.
3. Tokenisation into a token store: MB/s of input text on the 10x corpus with as many worker
   processes as cores, and with one; and, for the choice of numpy memmaps over Arrow, the same
   corpus through `datasets` (`Dataset.from_generator` + `map(batched=True, num_proc=cores)`):
   MB/s, bytes on disk, and the time to read one document's ids from each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bertabl.machine import cpu_model  # light: no torch at import

# Not bench.common: it imports torch, and every tokenising worker (spawned) re-imports this
# module as its main; the CLI's main module (bertabl.cli) is light, and so is this one.
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

MATRIX = """
name = "bench-data"
[data]
corpus = "{corpus}"
corpus_format = "paragraphs"
tokenizer = "{vocab}"
glue_dir = "{glue}"
[pretrain]
objective = "mlm_nsp"
steps = {steps}
batch_size = 32
max_seq_len = 128
learning_rate = 1e-4
[pretrain.model]
layers = 2
hidden = 128
heads = 2
max_position = 512
[finetune]
tasks = ["sst2"]
[resources]
cpus_per_trial = 1
"""
VOCAB = SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt"
GUTENBERG = SHARED_DATA / "corpus" / "gutenberg"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 10, 40])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--baseline", type=Path, help="folder holding another bertabl package")
    parser.add_argument("--pipeline-size", type=int, default=10, help="corpus copies (2., 3.)")
    parser.add_argument("--pipeline-seconds", type=float, default=10.0)
    parser.add_argument("--no-arrow", action="store_true", help="skip the datasets comparison")
    parser.add_argument("--part", choices=["pipeline", "tokenisation"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part == "pipeline":  # parts 2 and 3 run in processes of their own (_isolated)
        return pipeline(args.corpus, args.pipeline_seconds)
    if args.part == "tokenisation":
        return tokenisation(args.corpus, not args.no_arrow)
    if not GUTENBERG.is_dir():
        sys.exit(f"bench.data needs {GUTENBERG}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {cpu_model()}")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        tmp = Path(tmp)
        peaks = {}
        for size in args.sizes:
            corpus = copies(GUTENBERG, size, tmp / f"corpus-{size}x")
            for name, code in [("bertabl", None), ("baseline", args.baseline)]:
                if name == "baseline" and code is None:
                    continue
                peak = run_peak(corpus, tmp / f"run-{name}-{size}x", args.steps, code)
                peaks[(name, size)] = peak
                print(
                    f"{name:8s} {size:3d}x ({peak['mb']:.0f} MB of text): peak RSS "
                    f"{peak['rss'] / 1e9:.2f} GB, PSS {peak['pss'] / 1e9:.2f} GB, anonymous "
                    f"{peak['anon'] / 1e9:.2f} GB (tree), "
                    f"largest process {peak['top'] / 1e9:.2f} GB, {peak['seconds']:.0f} s"
                    + (f", preparation {peak['prepare']}" if peak.get("prepare") else "")
                )
        size = args.pipeline_size
        corpus = copies(GUTENBERG, size, tmp / f"corpus-{size}x")
        seconds = ["--pipeline-seconds", str(args.pipeline_seconds)]
        _isolated("pipeline", corpus, seconds)
        _isolated("tokenisation", corpus, ["--no-arrow"] if args.no_arrow else [])
        if args.sizes and len(args.sizes) > 1:
            first, last = min(args.sizes), max(args.sizes)
            if args.baseline is not None:
                print(
                    ratio_line(
                        f"baseline peak RSS {last}x / {first}x",
                        peaks[("baseline", last)]["rss"],
                        peaks[("baseline", first)]["rss"],
                    )
                )
            print(
                ratio_line(
                    f"peak RSS {last}x / {first}x",
                    peaks[("bertabl", last)]["rss"],
                    peaks[("bertabl", first)]["rss"],
                )
            )


def copies(source: Path, times: int, folder: Path) -> Path:
    """`times` copies of every .txt file in `source`, each with its own first line."""
    if folder.is_dir():
        return folder
    folder.mkdir(parents=True)
    for i in range(times):
        for path in sorted(source.glob("*.txt")):
            text = path.read_text(encoding="utf-8-sig")
            (folder / f"{path.stem}-{i}.txt").write_text(f"[copy {i} of {path.stem}]\n{text}")
    return folder


# -- 1. memory of a whole run --------------------------------------------------------------


def run_peak(corpus: Path, run_dir: Path, steps: int, code: Path | None) -> dict:
    matrix = run_dir.with_suffix(".toml")
    glue = SHARED_DATA / "glue"  # fine-tuning's data must exist, though --stage pretrain
    matrix.write_text(MATRIX.format(corpus=corpus, vocab=VOCAB, glue=glue, steps=steps))
    env = dict(os.environ)
    if code is not None:  # the other package first on the path, in the driver and Ray's workers
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "bertabl", "run", str(matrix), "--stage", "pretrain"]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "--run-dir", str(run_dir)],
        cwd=code or REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampler = TreeMemory(process.pid)
    sampler.start()
    output = process.communicate()[0]
    sampler.stop()
    if process.returncode != 0:
        sys.exit(f"bertabl run failed ({process.returncode}):\n{output}")
    prepared = [line for line in output.splitlines() if line.startswith("prepared ")]
    mb = sum(p.stat().st_size for p in corpus.glob("*.txt")) / 1e6
    return {
        "rss": sampler.rss,
        "pss": sampler.pss,
        "anon": sampler.anon,
        "top": sampler.top,
        "seconds": time.perf_counter() - started,
        "mb": mb,
        "prepare": prepared[0].split(": ", 1)[-1] if prepared else "",
    }


class TreeMemory:
    """Peak sums of RSS and PSS over a process and all its descendants, polled every 0.1 s."""

    def __init__(self, pid: int, every_s: float = 0.1):
        self.pid, self.every_s = pid, every_s
        self.rss = self.pss = self.anon = self.top = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self.stopped.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss = pss = anon = top = 0
            for process in tree:
                r, p, a = _memory(process.pid)
                rss, pss, anon, top = rss + r, pss + p, anon + a, max(top, r)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self.anon = max(self.anon, anon)
            self.top = max(self.top, top)
            self.stopped.wait(self.every_s)


def _memory(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, anonymous) bytes from /proc/<pid>/smaps_rollup; zeros for a process just
    gone. Anonymous memory is what cannot be dropped: resident pages of the memory-mapped token
    store are page cache, which the kernel can reclaim and re-read."""
    fields = {"Rss:": 0, "Pss:": 0, "Anonymous:": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name = line.split(maxsplit=1)[0] if line else ""
            if name in fields:
                fields[name] = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return fields["Rss:"], fields["Pss:"], fields["Anonymous:"]


# -- 2. the data pipeline on one core -----------------------------------------------------


def pipeline(corpus: Path, seconds: float) -> None:
    import numpy as np
    import torch

    from bertabl.data.token_store import TokenStore, build_store
    from bertabl.pretrain.batches import rank_steps
    from bertabl.pretrain.masking import Masker
    from bertabl.pretrain.pairs import PairStream
    from bertabl.trial.layout import batch_layout
    from bertabl.trial.pretrain import MaskingConfig

    data, tokenizer = _corpus(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        build_store(data, tokenizer, Path(tmp) / "store", workers=_cores())
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core from here on
        torch.set_num_threads(1)
        store = TokenStore.open(Path(tmp) / "store")
        ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
        for seq_len in (128, 512):
            for whole_word in (False, True):
                masker = Masker(tokenizer, "mlm_nsp", MaskingConfig(whole_word=whole_word), 0)
                stream = PairStream(store, np.arange(store.n_documents), seq_len, "bench", *ids[:2])
                steps = rank_steps(
                    stream.cursor(), batch_layout(256, 1, 0), 0, masker, "mlm_nsp", ids
                )
                tokens, batches = 0, 0
                started, cpu = time.perf_counter(), time.thread_time()
                while time.perf_counter() - started < seconds:
                    micro, _, _ = next(steps)
                    tokens += sum(int(m["attention_mask"].sum()) for m in micro)
                    batches += 1
                elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
                masking = "whole-word" if whole_word else "token"
                print(
                    f"data pipeline, 1 core, seq_len {seq_len}, {masking} masking: "
                    f"{tokens / elapsed / 1e6:.2f}M non-padding tokens/s of wall time, "
                    f"{tokens / cpu / 1e6:.2f}M per CPU-second ({batches} batches of 256 in "
                    f"{elapsed:.1f} s; pairs + masks + collation)"
                )


# -- 3. tokenisation, and the Arrow alternative --------------------------------------------


def tokenisation(corpus: Path, arrow: bool) -> None:
    import numpy as np

    from bertabl.data.corpus import iter_pieces
    from bertabl.data.token_store import TokenStore, build_store

    data, tokenizer = _corpus(corpus)
    mb = sum(p.stat().st_size for p in corpus.glob("*.txt")) / 1e6
    started = time.perf_counter()
    for _ in iter_pieces(data):
        pass
    seconds = time.perf_counter() - started
    print(
        f"reading alone (the driver's part: lines -> pieces): {mb / seconds:.1f} MB/s, the "
        "most any number of tokenising processes can get from one reader"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for workers in sorted({_cores(), 1}, reverse=True):
            folder = Path(tmp) / f"store-{workers}"
            started, before = time.perf_counter(), _cpu_seconds()
            meta = build_store(data, tokenizer, folder, workers=workers)
            seconds, cpu = time.perf_counter() - started, _cpu_seconds() - before
            disk = sum(f.stat().st_size for f in folder.iterdir())
            print(
                f"token store: {mb:.0f} MB of text -> {meta['tokens'] / 1e6:.1f}M tokens in "
                f"{seconds:.1f} s with {meta['workers']} process(es): {mb / seconds:.2f} MB/s, "
                f"{meta['tokens'] / seconds / 1e6:.2f}M tokens/s of wall time; "
                f"{mb / cpu:.2f} MB per CPU-second (this process and its workers: what one "
                f"core does, whatever else runs); {disk / 1e6:.0f} MB on disk"
            )
        store = TokenStore.open(folder)
        picks = np.random.default_rng(0).integers(0, store.n_documents, 200)
        started = time.perf_counter()
        for d in picks.tolist():
            first, end = int(store.documents[d]), int(store.documents[d + 1])
            np.asarray(store.tokens[store.sentences[first] : store.sentences[end]])
        each = (time.perf_counter() - started) / len(picks)
        print(f"token store: one document's ids in {each * 1e6:.1f} us (memmap slice)")
        if arrow:
            _arrow(corpus, tokenizer, mb, Path(tmp) / "arrow")


def _arrow(corpus: Path, tokenizer, mb: float, cache: Path) -> None:
    """The same corpus as a `datasets` Arrow dataset of documents (lists of sentence ids)."""
    import datasets
    import numpy as np

    from bertabl.data.readers import file_pieces

    datasets.disable_progress_bars()
    files = sorted(str(p) for p in corpus.glob("*.txt"))

    def documents(files):
        for name in files:
            yield {"text": [s for p in file_pieces(Path(name), "paragraphs") for s in p.segments]}

    def encode(batch):
        return {"ids": [tokenizer(d, add_special_tokens=False)["input_ids"] for d in batch["text"]]}

    features = datasets.Features(
        {"ids": datasets.Sequence(datasets.Sequence(datasets.Value("uint16")))}
    )
    started = time.perf_counter()
    rows = datasets.Dataset.from_generator(
        documents, gen_kwargs={"files": files}, cache_dir=str(cache)
    )
    rows = rows.map(
        encode,
        batched=True,
        batch_size=1,
        num_proc=_cores(),
        remove_columns=["text"],
        features=features,
    )
    seconds = time.perf_counter() - started
    disk = sum(p.stat().st_size for p in cache.rglob("*.arrow"))
    print(
        f"datasets (from_generator + map, num_proc={_cores()}): {seconds:.1f} s, "
        f"{mb / seconds:.2f} MB/s; {disk / 1e6:.0f} MB of Arrow files"
    )
    picks = np.random.default_rng(0).integers(0, len(rows), 20)
    started = time.perf_counter()
    for d in picks.tolist():
        rows[d]["ids"]
    each = (time.perf_counter() - started) / len(picks)
    print(f"datasets: one document's ids in {each * 1e3:.1f} ms (Dataset[i], Python lists)")


def _corpus(corpus: Path):
    from bertabl.data.corpus import corpus_data
    from bertabl.data.tokenizer import build_tokenizer
    from bertabl.matrix.schema import DataSection

    section = DataSection(corpus=str(corpus), corpus_format="paragraphs", tokenizer=str(VOCAB))
    data = corpus_data(section)
    return data, build_tokenizer(data, Path(tempfile.gettempdir()))


def _isolated(part: str, corpus: Path, extra: list[str]) -> None:
    """Run a part in a fresh process (its own memory and CPU affinity); it prints its lines."""
    command = [sys.executable, "-m", "bench.data", "--part", part, "--corpus", str(corpus)]
    subprocess.run([*command, *extra], cwd=REPO, check=True)


def ratio_line(name: str, ours: float, theirs: float) -> str:
    return f"{name}: {ours / theirs:.2f}x"


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _cores() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
