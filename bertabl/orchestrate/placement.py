"""Placement checked per node before any trial starts: a trial Ray could never place is an error
naming the matrix key and what each node has, not a run that waits forever.

Ray places each worker of a trial as one bundle on one node (a single-worker trial is one
bundle too). Comparing with the cluster's totals is not enough: 16 workers of 1 GPU fit the
total of 4 nodes x 8 GPUs, but a worker asking for 2 CPUs fits no 1-CPU node at all, however
many there are. Bundles of one trial are all alike, so how many of them a node holds is its
smallest ratio of having to needing, and the cluster holds the sum over its nodes.
Torch- and Ray-free: it takes the nodes as plain values.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bertabl.errors import UserError
from bertabl.matrix.resources import TrialResources

EPSILON = 1e-9  # 0.1 + 0.2 CPUs: fractions that add up to a whole must still fit it


@dataclass(frozen=True)
class Node:
    """What one alive Ray node has in total (CPUs, GPUs)."""

    cpus: float
    gpus: float

    def holds(self, bundle: dict[str, float]) -> int:
        """How many `bundle`s fit on this node at once."""
        fits = [math.floor(self._has(k) / v + EPSILON) for k, v in bundle.items() if v > 0]
        return min(fits) if fits else 0

    def _has(self, resource: str) -> float:
        return {"CPU": self.cpus, "GPU": self.gpus}.get(resource, 0.0)

    def __str__(self) -> str:
        return f"{self.cpus:g} CPU, {self.gpus:g} GPU"


def alive_nodes(ray_nodes: list[dict[str, Any]]) -> list[Node]:
    """The alive nodes out of `ray.nodes()`."""
    return [
        Node(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0))
        for n in ray_nodes
        if n.get("Alive", True)
    ]


def describe(nodes: list[Node]) -> str:
    """What each node has, identical nodes counted once: '1 CPU, 0 GPU (x2); 8 CPU, 4 GPU'."""
    if not nodes:
        return "the Ray cluster has no alive node"
    counts = Counter(str(node) for node in nodes)
    parts = [f"{text} (x{n})" if n > 1 else text for text, n in counts.items()]
    noun = "node has" if len(nodes) == 1 else "nodes have"
    return f"the Ray cluster's {len(nodes)} {noun}: " + "; ".join(parts)


def capacity(nodes: list[Node], res: TrialResources) -> int:
    """How many of the stage's trials Ray can run at once: all workers of each placed."""
    return sum(node.holds(res.bundle) for node in nodes) // res.workers


def check_stage(nodes: list[Node], res: TrialResources, precision: str) -> None:
    """Raise a one-line UserError when a trial of this stage could never be placed."""
    cpus, gpus = res.cpus_per_worker, res.gpus_per_worker
    cpu_key, gpu_key = res.keys["cpus_per_worker"], res.keys["gpus_per_worker"]
    workers_key = res.keys["workers"]
    if gpus > 0 and not any(node.gpus for node in nodes):
        raise UserError(
            f"{gpu_key} = {gpus:g} but {describe(nodes)} (no GPU); set {gpu_key} = 0 "
            f"(--set {gpu_key}=0) to run on CPU, or run on a GPU host / cluster (--address)"
        )
    if precision == "fp16" and gpus == 0:
        raise UserError(
            f"resources.precision = 'fp16' needs GPUs ({gpu_key} > 0); use 'auto', 'fp32' or "
            "'bf16' on CPU"
        )
    per_worker = f"{cpus:g} CPU, {gpus:g} GPU"
    if not any(node.holds(res.bundle) for node in nodes):
        if not any(node.cpus + EPSILON >= cpus for node in nodes):
            culprit = f"{cpu_key} = {cpus:g}"
            fix = f"lower it (--set {cpu_key}=1)"
        elif not any(node.gpus + EPSILON >= gpus for node in nodes):
            culprit = f"{gpu_key} = {gpus:g}"
            fix = f"lower it (--set {gpu_key}=1)"
        else:
            culprit = f"{cpu_key} = {cpus:g} with {gpu_key} = {gpus:g}"
            fix = "lower one of them"
        raise UserError(
            f"{culprit}: one worker ({per_worker}) fits no node ({describe(nodes)}); {fix}, "
            "or add a node that has room for it"
        )
    if capacity(nodes, res) == 0:
        most = sum(node.holds(res.bundle) for node in nodes)
        raise UserError(
            f"{workers_key} = {res.workers}: the trial's workers ({per_worker} each) cannot all "
            f"be placed at once, there is room for {most} ({describe(nodes)}); lower "
            f"{workers_key} (--set {workers_key}={most}) or {cpu_key}, or add nodes"
        )
