"""`bertabl slurm` on a real Slurm: the generated script runs a cut-down demo over two nodes,
the job's time limit stops it (Slurm's --signal), the script requeues the job, and a
resubmission of the same script finishes the run with the numbers of an uninterrupted run.

It needs a Slurm whose nodes are this machine (the run directory is in pytest's tmp folder,
which only this machine sees): `.ci/slurm.sh up` starts one (Debian's slurm-wlm, two 1-CPU
nodes on this host); CI does that where it can install packages. Elsewhere it skips.
Run it alone with `pytest -s tests/test_slurm_cluster.py` (-s shows the jobs' story).
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_results

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# The demo cut down to 9 trials (~1-2 minutes on 2 CPUs): two pre-trainings of 1,000 steps with a
# checkpoint every 50, then 6 fine-tunes (3 rows x syn_agree x 2 restarts, 5 epochs). Slurm checks
# time limits every 30 s, so the work left after the first checkpoint must outlast that check by a
# wide margin on a fast machine: at 400 steps a CI machine finished the run 27 s after the
# TimeLimit update, before Slurm's signal came.
OVERRIDES = [
    "pretrain.steps=1000",
    "checkpointing.every_steps=50",
    "finetune.restarts=2",
    'finetune.tasks=["syn_agree"]',
    "finetune.grid.epochs=[5]",
]
STOP_BEFORE_S = 150  # --stop-before: Slurm signals once at most this + 30 s are left
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def _slurm(*args: str, timeout: float = 30) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _why_no_local_slurm() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch here (`.ci/slurm.sh up` starts a Slurm on this machine)"
    try:
        nodes = _slurm("scontrol", "show", "nodes", "--oneliner", timeout=10).splitlines()
    except (RuntimeError, subprocess.SubprocessError, OSError) as err:
        return f"Slurm does not answer ({err}); `.ci/slurm.sh up` starts one"
    hosts = {m.group(1) for n in nodes if (m := re.search(r"NodeHostName=(\S+)", n))}
    if len(nodes) < 2 or hosts != {socket.gethostname().split(".")[0]}:
        return f"needs a Slurm of >= 2 nodes all on this machine (.ci/slurm.sh), found {hosts}"
    return None


@pytest.fixture(scope="module")
def local_slurm():
    reason = _why_no_local_slurm()
    if reason:
        pytest.skip(reason)


def _job(job_id: str) -> dict[str, str]:
    text = _slurm("scontrol", "show", "job", job_id, "--oneliner")
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _wait_job(job_id: str, until, timeout: float) -> dict[str, str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = _job(job_id)
        if until(job):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {job.get('JobState')} after {timeout:g} s")


def _seconds(duration: str) -> int:
    days, _, clock = duration.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


def _bertabl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bertabl", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_time_limit_stops_the_job_and_a_resubmission_finishes_it(local_slurm, tmp_path: Path):
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    reference = tmp_path / "reference"
    plain = _bertabl("run", "matrices/demo.toml", *sets, "--run-dir", str(reference))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    expected = run_results(reference)

    run_dir = tmp_path / "slurm"
    written = _bertabl(
        "slurm", "matrices/demo.toml", *sets, "--run-dir", str(run_dir),
        "--nodes", "2", "--cpus-per-node", "1", "--time", "00:10:00",
        "--stop-before", str(STOP_BEFORE_S), "--requeues", "1", "--submit",
    )  # fmt: skip
    assert written.returncode == 0, written.stdout + written.stderr
    job_id = re.search(r"submitted job (\d+)", written.stdout).group(1)
    script = run_dir / "slurm" / "demo.sbatch"
    print(f"\n$ bertabl slurm matrices/demo.toml ... --submit\n{written.stdout}")

    # Mid pre-training (its first checkpoint written), the job's time limit is cut to leave
    # 2-3 minutes: less than --stop-before + 30 s, so Slurm's next time-limit check (every 30 s)
    # sends the script its --signal, long before the limit itself.
    deadline = time.time() + 300
    while not list((run_dir / "trials").glob("pt-*/checkpoints/ckpt-*.pt")):
        assert _job(job_id)["JobState"] in ("PENDING", "RUNNING"), _job(job_id)
        assert time.time() < deadline, "no pre-training checkpoint within 300 s"
        time.sleep(0.2)
    elapsed = _seconds(_job(job_id)["RunTime"])
    limit = math.ceil(elapsed / 60) + 2
    _slurm("scontrol", "update", f"JobId={job_id}", f"TimeLimit={limit}")
    print(f"$ scontrol update JobId={job_id} TimeLimit={limit}   # at {elapsed} s into the job")

    # The script stops bertabl and requeues the job (--requeues 1): pending again, restart 1.
    requeued = _wait_job(job_id, lambda j: j["Restarts"] == "1" or j["JobState"] in ENDED, 240)
    log = (run_dir / "slurm" / f"bertabl-demo-{job_id}.out").read_text()
    print(log)
    assert requeued["Restarts"] == "1", f"not requeued: {requeued['JobState']}\n{log}"
    assert "the time limit is near (--signal): stopping bertabl" in log
    assert " ran, " not in log.split("the time limit is near")[0], (
        "the run ended before Slurm's time-limit signal came: this machine is fast enough that "
        "OVERRIDES needs more pre-training steps to leave work for the signal to interrupt"
    )
    assert "interrupted (SIGTERM)" in log and "requeued (1 of 1)" in log
    records = run_results(run_dir)
    assert {r["status"] for r in records.values()} <= {"done"}  # nothing failed or blocked
    assert len(records) < len(expected), "the time limit should stop the run before its end"
    # A requeued job may start two minutes later (Slurm's requeue delay): cancel it and submit
    # the same script again, as a user would once the requeues are used up.
    assert requeued["JobState"] == "PENDING"
    _slurm("scancel", job_id)

    resubmitted = _slurm("sbatch", "--parsable", str(script)).strip()
    print(f"$ sbatch {script}   # job {resubmitted}")
    done = _wait_job(resubmitted, lambda j: j["JobState"] in ENDED, 600)
    log = (run_dir / "slurm" / f"bertabl-demo-{resubmitted}.out").read_text()
    print(log)
    assert done["JobState"] == "COMPLETED" and done["ExitCode"] == "0:0", log
    assert f"bertabl resume {run_dir}" in log
    assert run_results(run_dir) == expected  # every trial's metrics, history and weights
    print("uninterrupted:", *_table(reference / "demo.md"), sep="\n")
    print("interrupted, requeued, resubmitted:", *_table(run_dir / "demo.md"), sep="\n")
    assert _table(run_dir / "demo.md") == _table(reference / "demo.md")


def _table(report: Path) -> list[str]:
    """The report's headline table (its first): every row's mean ± std per task."""
    lines = report.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[first:end]
