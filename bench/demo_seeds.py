"""Does the demo's finding survive new seeds? The demo run once per seed, its conclusions compared.

    python -m bench.demo_seeds                  # seeds 0-4, run directories under runs/demo_seeds
    python -m bench.demo_seeds --seeds 0 1 --matrix matrices/demo.toml --runs /tmp/seeds

Not a timing benchmark: the claim it checks is the README's "the demo's conclusion is the same
at every seed". Each seed sets both `data.synthetic.seed` (a different synthetic language,
corpus and task examples) and `finetune.seed` (other restart seeds), so the run shares nothing
with the others but the recipe. For every non-baseline cell it prints the difference to the
baseline row and the per-example paired bootstrap's 95% interval from the run's JSON report,
and whether that interval excludes zero; the last lines say, per cell, whether all seeds agree.
A finished seed's run directory is reused (re-running trains nothing), so an interrupted check
resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_seed(matrix: Path, runs: Path, seed: int) -> tuple[dict, float]:
    """`bertabl run` at one seed (a subprocess, as a user types it); its JSON report and seconds."""
    run_dir = runs / f"seed{seed}"
    out = run_dir / "report"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bertabl", "run", str(matrix), "--run-dir", str(run_dir),
         "--out", str(out), "--set", f"data.synthetic.seed={seed}",
         "--set", f"finetune.seed={seed}"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    subprocess.run(
        [sys.executable, "-m", "bertabl", "report", str(run_dir), "--format", "json",
         "--out", str(out)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    report = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))["report"]
    return report, seconds


def verdict(detail: dict) -> str:
    """'+' / '-' when the 95% interval of the difference to the baseline excludes zero, else '0'."""
    low, high = detail["difference_ci"]
    return "+" if low > 0 else "-" if high < 0 else "0"


def cell_lines(report: dict, verdicts: dict[tuple[str, str], list[str]]) -> list[str]:
    """One line per non-baseline cell of a run's report; each cell's verdict joins `verdicts`."""
    lines = []
    for d in report["details"]:
        if d.get("difference_ci") is None:
            continue  # the baseline row itself, or no saved predictions
        low, high = (100 * x for x in d["difference_ci"])
        mark = verdict(d)
        verdicts.setdefault((d["row_label"], d["column"]), []).append(mark)
        lines.append(
            f"  {d['row_label']:<22} {d['column']:<22} mean {100 * d['mean']:5.1f}"
            f"  stalled {d['stalled']}/{d['n']}  Δ 95% CI [{low:+.1f}, {high:+.1f}]  {mark}"
        )
    return lines


def agreement_lines(verdicts: dict[tuple[str, str], list[str]]) -> list[str]:
    """Per cell: its verdicts over the seeds, and whether they are all the same."""
    lines = ["per cell, over seeds (+/-: the interval excludes zero; 0: it does not)"]
    for (row, column), marks in verdicts.items():
        same = "same at every seed" if len(set(marks)) == 1 else "NOT the same"
        lines.append(f"  {row:<22} {column:<22} {' '.join(marks)}  {same}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=Path, default=REPO / "matrices" / "demo.toml")
    parser.add_argument("--runs", type=Path, default=Path("runs") / "demo_seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)

    verdicts: dict[tuple[str, str], list[str]] = {}
    for seed in args.seeds:
        report, seconds = run_seed(args.matrix, args.runs, seed)
        print(f"seed {seed}: {seconds:.0f} s (wall, `bertabl run`)")
        print("\n".join(cell_lines(report, verdicts)))
    print()
    print("\n".join(agreement_lines(verdicts)))


if __name__ == "__main__":
    main()
