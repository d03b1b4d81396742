"""`bertabl slurm`: a Slurm batch script that runs a matrix on a Ray cluster over its allocation.

The script (slurm.sbatch, filled in here) follows Ray's Slurm guide: one task per node, a Ray
head on the first node and a worker on every other (each a job step), `bertabl run` on the
head with RAY_ADDRESS set. Ray's `symmetric-run` is not used: it takes fixed ports and refuses
to start on a node where any Ray already runs (another user's job on a shared node), cannot
tell two Slurm nodes of one host apart, and does not pass a signal on to the command it runs.

Time limits: `--signal=B:USR1@<stop_before>` has Slurm wake the script that long before the
limit (Slurm checks limits every 30 s, so it may come up to a minute earlier); the script sends
bertabl SIGTERM, bertabl stops its trials without marking them failed, writes the report of
what finished and exits with INTERRUPTED_EXIT, and the script then requeues itself (up to
`requeues` times) or says to submit it again. Either way the next job resumes the run.

What cannot work is refused before the job waits in the queue: a matrix whose trials fit no
node of the allocation (the placement check `bertabl run` makes against Ray's nodes, here
against the nodes asked for), GPUs on a partition that has none, more nodes, CPUs or time than
the partition has (where `sinfo` answers). A run directory, matrix or Python environment on a
node-local filesystem is a warning: every node must see them at the same path.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bertabl import __version__
from bertabl.errors import UserError
from bertabl.matrix.plan import Plan
from bertabl.matrix.resources import STAGES
from bertabl.orchestrate.interrupt import INTERRUPTED_EXIT
from bertabl.orchestrate.placement import Node, check_stage

TEMPLATE = Path(__file__).with_name("slurm.sbatch")
RAY_TIMEOUT_S = 300  # how long the script waits for Ray's nodes to join
# Filesystems that only their own machine sees (/proc/mounts types); anything else (nfs, lustre,
# gpfs, beegfs, ceph, fuse...) may be shared.
LOCAL_FILESYSTEMS = {
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "f2fs", "jfs",
    "reiserfs", "vfat", "exfat", "ntfs", "ntfs3", "squashfs", "ramfs",
}  # fmt: skip


@dataclass(frozen=True)
class SlurmJob:
    """What `bertabl slurm` was asked for; paths absolute."""

    matrix: Path
    run_dir: Path
    script: Path
    workdir: Path
    overrides: list[str] = field(default_factory=list)
    scale: str | None = None
    nodes: int = 1
    cpus_per_node: int | None = None  # None: whole nodes (--exclusive), Ray counts their CPUs
    gpus_per_node: int = 0
    mem: str | None = None
    time: str = "24:00:00"
    stop_before: int | None = None  # seconds; None: min(5 minutes, a quarter of the time)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    requeues: int = 0
    job_name: str = "bertabl"
    setup: list[str] = field(default_factory=list)  # default: put this Python's bin/ first
    sbatch_options: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> int:
        return parse_time(self.time)

    @property
    def lead(self) -> int:
        """Seconds before the time limit at which bertabl is asked to stop."""
        if self.stop_before is not None:
            return self.stop_before
        return min(300, self.seconds // 4)


def parse_time(text: str) -> int:
    """Seconds of a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        raise UserError(
            f"--time {text!r}: not a Slurm time limit; use HH:MM:SS, MM, or D-HH:MM:SS "
            "(e.g. --time 12:00:00)"
        )
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is None:
        if third is not None:  # HH:MM:SS
            hours, minutes, secs = first, second, third
        else:  # MM or MM:SS
            hours, minutes, secs = 0, first, second or 0
    else:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, secs = first, second or 0, third or 0
    total = (((days or 0) * 24 + hours) * 60 + minutes) * 60 + secs
    if total <= 0:
        raise UserError(f"--time {text!r}: the time limit must be longer than zero")
    return total


def render(job: SlurmJob) -> str:
    """The batch script's text."""
    values = {
        "version": __version__,
        "matrix_name": job.matrix.name,
        "job_name": job.job_name,
        "nodes": str(job.nodes),
        "resources": "\n".join(f"#SBATCH {o}" for o in _resource_options(job)),
        "time": job.time,
        "stop_before": str(job.lead),
        "workdir": str(job.workdir),
        "log": str(job.run_dir / "slurm" / "%x-%j.out"),
        "options": "".join(f"#SBATCH {o}\n" for o in _queue_options(job)),
        "setup": "\n".join(job.setup or default_setup()),
        "run_dir": shlex.quote(str(job.run_dir)),
        "matrix": shlex.quote(str(job.matrix)),
        "script": shlex.quote(str(job.script)),
        "interrupted_exit": str(INTERRUPTED_EXIT),
        "requeues": str(job.requeues),
        "gpus_per_node": str(job.gpus_per_node),
        "ray_timeout": str(RAY_TIMEOUT_S),
        "run_options": "".join(
            f" {option} {shlex.quote(value)}"
            for option, values in (("--set", job.overrides), ("--scale", [job.scale]))
            for value in values
            if value
        ),
    }
    return fill(TEMPLATE.read_text(encoding="utf-8"), values)


def fill(template: str, values: dict[str, str]) -> str:
    """Replace each {{name}}; every placeholder must have a value and every value a place.
    Written here rather than with string.Template or str.format, whose `$`/`{}` syntax the
    bash script itself is full of (and jinja2 is not a bertabl dependency)."""
    names = set(re.findall(r"\{\{(\w+)\}\}", template))
    if names != set(values):
        raise ValueError(f"template placeholders {sorted(names)} != values {sorted(values)}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


def default_setup() -> list[str]:
    """The Python environment this `bertabl slurm` runs from, first on PATH in the job."""
    bin_dir = Path(sys.executable).parent
    return [
        "# the Python environment `bertabl slurm` ran from (on a path every node sees)",
        f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"',
    ]


def _resource_options(job: SlurmJob) -> list[str]:
    options = [f"--cpus-per-task={job.cpus_per_node}" if job.cpus_per_node else "--exclusive"]
    if job.gpus_per_node:
        options.append(f"--gres=gpu:{job.gpus_per_node}")
    if job.mem:
        options.append(f"--mem={job.mem}")
    return options


def _queue_options(job: SlurmJob) -> list[str]:
    named = (("partition", job.partition), ("account", job.account), ("qos", job.qos))
    options = [f"--{name}={value}" for name, value in named if value]
    options.append("--requeue" if job.requeues else "--no-requeue")
    return options + list(job.sbatch_options)


def check_job(job: SlurmJob, plan: Plan, partition: list[dict] | None) -> list[str]:
    """Raise a UserError for what cannot work; return warnings to read before queueing.
    `partition`: its node groups as `sinfo` describes them (partition_info), None if unknown."""
    for path in (job.run_dir, job.workdir):
        if re.search(r"[\s%]", str(path)):
            raise UserError(
                f"{path}: Slurm reads #SBATCH paths without quoting and '%' as a pattern; "
                "use a path without spaces or '%' (--run-dir)"
            )
    if job.nodes < 1:
        raise UserError(f"--nodes {job.nodes}: a job needs at least one node")
    if not 10 <= job.lead < job.seconds:
        raise UserError(
            f"--stop-before {job.lead}: must be at least 10 s and less than --time {job.time} "
            f"({job.seconds} s): bertabl needs that long to stop and write its report"
        )
    if partition is not None:
        _check_partition(job, partition)
    cpus = job.cpus_per_node or (min(g["cpus"] for g in partition) if partition else None)
    if cpus is not None:
        nodes = [Node(float(cpus), float(job.gpus_per_node))] * job.nodes
        resources = plan.matrix.resources
        for stage in STAGES:
            try:
                check_stage(nodes, resources.stage(stage), resources.precision)
            except UserError as err:
                asked = f"--nodes {job.nodes} --cpus-per-node {cpus} --gpus-per-node "
                raise UserError(
                    f"the job ({asked}{job.gpus_per_node}) cannot run it: {err}"
                ) from None
    local = [
        f"{what} {path} ({kind})"
        for what, path in (
            ("the run directory", job.run_dir),
            ("the matrix", job.matrix),
            ("the Python environment", Path(sys.prefix)),
        )
        if (kind := local_filesystem(path))
    ]
    if not local:
        return []
    return [
        f"on a node-local filesystem: {'; '.join(local)}. Every node of the job, and the "
        "machine you read the report on, must see them at the same path (NFS, Lustre, GPFS...)"
    ]


def _check_partition(job: SlurmJob, groups: list[dict]) -> None:
    name = groups[0]["partition"]
    nodes = sum(g["nodes"] for g in groups)
    if job.nodes > nodes:
        raise UserError(f"--nodes {job.nodes}: partition {name} has {nodes} node(s)")
    if job.gpus_per_node and not any(g["gpus"] for g in groups):
        raise UserError(
            f"--gpus-per-node {job.gpus_per_node}: partition {name} has no GPUs (sinfo lists no "
            "gpu GRES); choose a GPU partition (--partition) or --gpus-per-node 0"
        )
    if job.gpus_per_node > max(g["gpus"] for g in groups):
        most = max(g["gpus"] for g in groups)
        raise UserError(
            f"--gpus-per-node {job.gpus_per_node}: partition {name}'s nodes have at most {most}"
        )
    if job.cpus_per_node and job.cpus_per_node > max(g["cpus"] for g in groups):
        most = max(g["cpus"] for g in groups)
        raise UserError(
            f"--cpus-per-node {job.cpus_per_node}: partition {name}'s nodes have at most {most}"
        )
    limit = groups[0]["time_limit"]
    if limit is not None and job.seconds > limit:
        raise UserError(
            f"--time {job.time}: partition {name} allows at most {groups[0]['time_text']}; "
            "ask for less (a resubmission continues the run)"
        )


def partition_info(name: str | None) -> list[dict] | None:
    """The node groups of a partition (the default one for None) as `sinfo` reports them:
    partition, nodes, CPUs and GPUs per node, time limit; None where sinfo is absent or does
    not answer (writing a script away from the cluster); UserError for an unknown partition."""
    if shutil.which("sinfo") is None:
        return None
    command = ["sinfo", "--noheader", "--format=%P|%D|%c|%G|%l"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    groups = [parse_sinfo_line(line) for line in out.stdout.splitlines() if line.strip()]
    if name is None:
        chosen = [g for g in groups if g["default"]]
    else:
        chosen = [g for g in groups if g["partition"] == name]
        if not chosen:
            known = ", ".join(sorted({g["partition"] for g in groups}))
            raise UserError(f"--partition {name}: Slurm has no such partition (sinfo: {known})")
    return chosen or None


def parse_sinfo_line(line: str) -> dict:
    """One `sinfo --format=%P|%D|%c|%G|%l` line: partition (a trailing * marks the default),
    node count, CPUs per node, GRES (gpu:a100:4,...), time limit."""
    partition, nodes, cpus, gres, limit = line.strip().split("|")
    gpus = sum(
        int(m.group(1)) for m in re.finditer(r"gpu(?::[\w.-]+)?:(\d+)", gres)
    )  # "gpu:4", "gpu:a100:4(S:0-1)"
    return {
        "partition": partition.rstrip("*"),
        "default": partition.endswith("*"),
        "nodes": int(nodes),
        "cpus": int(cpus.rstrip("+")),
        "gpus": gpus,
        "time_limit": None if limit in ("infinite", "n/a") else parse_time(limit),
        "time_text": limit,
    }


def local_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The type of the node-local filesystem holding `path` (ext4, tmpfs...); None when it may
    be shared or the mount table (`mounts`, default /proc/mounts) cannot tell."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = path.resolve()
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == Path(point) or Path(point) in target.parents
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind if kind in LOCAL_FILESYSTEMS else None


def write_script(job: SlurmJob) -> Path:
    """Write the batch script (and create the run directory's slurm/ folder for its logs)."""
    (job.run_dir / "slurm").mkdir(parents=True, exist_ok=True)
    job.script.parent.mkdir(parents=True, exist_ok=True)
    job.script.write_text(render(job), encoding="utf-8")
    job.script.chmod(0o755)
    return job.script


def submit(script: Path, *sbatch_args: str) -> str:
    """Submit with sbatch; the job id."""
    if shutil.which("sbatch") is None:
        raise UserError(
            f"--submit: there is no sbatch here; the script is written ({script}): submit it "
            "from a Slurm login node with `sbatch` (the same command)"
        )
    command = ["sbatch", "--parsable", *sbatch_args, str(script)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
        raise UserError(f"sbatch refused {script}: {reason}")
    return done.stdout.strip().split(";")[0]
