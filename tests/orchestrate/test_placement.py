"""Placement checked per node: what fits the cluster's totals but no node, or not all at once,
is one line naming the key and what each node has."""

from __future__ import annotations

import pytest

from bertabl.errors import UserError
from bertabl.matrix.schema import Resources
from bertabl.orchestrate.placement import Node, alive_nodes, capacity, check_stage, describe

ONE_CPU_NODES = [Node(1.0, 0.0), Node(1.0, 0.0)]
GPU_NODES = [Node(64.0, 8.0)] * 4  # 4 nodes x 8 GPUs: 32 GPUs in all


def _stage(stage: str = "pretrain", **section):
    return Resources(**{stage: section}).stage(stage)


def test_nodes_come_from_ray_nodes_alive_only():
    nodes = alive_nodes(
        [
            {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0, "memory": 1e9}},
            {"Alive": False, "Resources": {"CPU": 8.0}},
            {"Alive": True, "Resources": {"CPU": 1.0}},
        ]
    )
    assert nodes == [Node(8.0, 2.0), Node(1.0, 0.0)]
    assert describe(nodes) == "the Ray cluster's 2 nodes have: 8 CPU, 2 GPU; 1 CPU, 0 GPU"
    assert describe(ONE_CPU_NODES) == "the Ray cluster's 2 nodes have: 1 CPU, 0 GPU (x2)"


def test_a_worker_bigger_than_every_node_names_its_key():
    res = _stage(workers=2, cpus_per_worker=2)
    with pytest.raises(UserError) as caught:
        check_stage(ONE_CPU_NODES, res, "auto")
    assert str(caught.value) == (
        "resources.pretrain.cpus_per_worker = 2: one worker (2 CPU, 0 GPU) fits no node (the "
        "Ray cluster's 2 nodes have: 1 CPU, 0 GPU (x2)); lower it (--set "
        "resources.pretrain.cpus_per_worker=1), or add a node that has room for it"
    )


def test_workers_that_fit_the_totals_but_not_the_nodes_fail():
    # 2 CPU in all, yet 3 workers of 1 CPU cannot all be placed at once
    with pytest.raises(
        UserError, match=r"resources\.pretrain\.workers = 3: .* there is room for 2 "
    ):
        check_stage(ONE_CPU_NODES, _stage(workers=3, cpus_per_worker=1), "auto")
    # 4 x 8 GPUs: 16 one-GPU workers fit, but 8-CPU workers only 8 per 64-CPU node... fit too
    check_stage(GPU_NODES, _stage(workers=16, cpus_per_worker=4, gpus_per_worker=1), "auto")
    # 3 GPUs per worker: 2 per 8-GPU node, 8 in all
    res = _stage(workers=16, cpus_per_worker=4, gpus_per_worker=3)
    with pytest.raises(UserError, match="there is room for 8 "):
        check_stage(GPU_NODES, res, "auto")
    # CPU and GPU each fit some node, but no node has both
    nodes = [Node(16.0, 0.0), Node(2.0, 4.0)]
    with pytest.raises(UserError, match=r"cpus_per_worker = 8 with resources\.gpus_per_trial = 1"):
        check_stage(
            nodes,
            Resources(gpus_per_trial=1, pretrain={"cpus_per_worker": 8}).stage("pretrain"),
            "auto",
        )


def test_gpus_asked_on_a_cpu_cluster_and_fp16_on_cpu():
    with pytest.raises(
        UserError, match=r"resources\.finetune\.gpus_per_worker = 0\.5 but .*no GPU"
    ):
        check_stage(ONE_CPU_NODES, _stage("finetune", gpus_per_worker=0.5), "auto")
    with pytest.raises(UserError, match=r"'fp16' needs GPUs \(resources\.gpus_per_trial > 0\)"):
        check_stage(ONE_CPU_NODES, _stage(), "fp16")


def test_capacity_counts_whole_trials():
    assert capacity(ONE_CPU_NODES, _stage(workers=2, cpus_per_worker=1)) == 1
    assert capacity(ONE_CPU_NODES, _stage(workers=1, cpus_per_worker=0.5)) == 4
    assert capacity(GPU_NODES, _stage(workers=16, gpus_per_worker=1)) == 2
    # fractions that add up to a whole fit it (0.1 + 0.2 + ... in binary)
    assert capacity([Node(0.3, 0.0)], _stage(workers=3, cpus_per_worker=0.1)) == 1
