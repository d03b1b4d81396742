"""Data-parallel trials on Ray Train, on a simulated cluster of 1-CPU nodes on this machine: a
2-worker trial must span nodes, matches one process, survives a killed worker bit-identically,
and a trial no node can place fails at once with one line."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertabl.errors import UserError
from bertabl.matrix import build_plan
from bertabl.matrix.load import MatrixSource, tomllib, validate
from bertabl.orchestrate.record import Status
from bertabl.orchestrate.run import run_plan
from bertabl.orchestrate.store import RunStore
from bertabl.orchestrate.train_workers import describe_failures
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from tests.conftest import TINY_MATRIX

SOURCE = MatrixSource(path="m.toml", sha256="0" * 64, scale="tiny")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of 1 CPU each (both on this machine): 2 workers of 1 CPU must span both."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    nodes.shutdown()


def _plan(
    resources: dict,
    steps: int = 6,
    dropout: float = 0.0,
    every: int = 0,
    multitask: bool = False,
    **pretrain,
):
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["steps"] = steps
    raw["pretrain"] |= pretrain
    raw["pretrain"]["model"]["dropout"] = dropout
    raw["pretrain"]["variants"] = raw["pretrain"]["variants"][:1]  # MLM + NSP
    if multitask:  # syn_agree and syn_chain on one encoder, as well as each on its own
        raw["finetune"]["multitask"] = [{"name": "mt", "tasks": ["syn_agree", "syn_chain"]}]
    else:
        raw["finetune"]["tasks"] = ["syn_agree"]
    raw["finetune"]["restarts"] = 1
    # 64 examples in batches of 21: the last batch has 1, so one rank's share of it is empty
    raw["finetune"]["grid"]["batch_size"] = [21]
    raw["resources"] = resources
    raw["checkpointing"] = {"every_steps": every}
    return build_plan(validate(raw, "m.toml"))


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model" / "model.safetensors")


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _metrics(record) -> dict:
    return {k: v for k, v in record.metrics.items() if k != "seconds"}


@pytest.mark.slow  # two Ray Train runs (start-up ~10 s each on 2 cores) and a Tune run
def test_two_workers_span_nodes_and_match_one_process(cluster, tmp_path: Path):
    plan = _plan(
        {
            "pretrain": {"workers": 2, "cpus_per_worker": 1, "micro_batch_size": 2},
            "finetune": {"workers": 2, "cpus_per_worker": 1},
        },
        multitask=True,
    )
    single_task = next(t for t in plan.finetune if t.task == "syn_agree")
    multi_task = next(t for t in plan.finetune if t.multitask)
    only = {plan.pretrain[0].id, single_task.id, multi_task.id}
    store = RunStore(tmp_path / "run")
    summary = run_plan(plan, store, SOURCE, address=cluster.address, only=only)
    assert summary.failed == [] and set(summary.done) == only

    pretraining = store.record(plan.pretrain[0].id)
    assert pretraining.status == Status.DONE
    ranks = pretraining.workers
    assert [w.rank for w in ranks] == [0, 1]
    assert ranks[0].node_id != ranks[1].node_id  # 1 CPU per node: one worker per node

    # The same global batch in one process, no accumulation: the same model to float rounding.
    config = plan.pretrain[0].config
    alone = pretrain(config, tmp_path / "one", TrialRuntime(CPU))
    assert _max_diff(_weights(tmp_path / "one"), _weights(store.trial_dir(plan.pretrain[0].id))) < (
        1e-5
    )
    for key, value in _metrics(pretraining).items():
        assert value == pytest.approx(alone[key], rel=1e-5, abs=1e-5), key

    # Fine-tuning on 2 workers: each takes half of every batch, their gradients are summed
    # (also for the last batch of 1, where rank 1 has nothing: the sum is rank 0's); in a
    # multi-task trial each step trains one head, whose gradients alone are summed.
    from bertabl.finetune.epoch_loop import finetune
    from bertabl.finetune.multitask import finetune_multitask

    pretrained = store.model_dir(plan.pretrain[0].id)
    for trial, body in ((single_task, finetune), (multi_task, finetune_multitask)):
        tuned = store.record(trial.id)
        assert len({w.node_id for w in tuned.workers}) == 2
        alone = body(trial.config, pretrained, tmp_path / trial.id, TrialRuntime(CPU))
        assert _metrics(tuned).keys() == alone.keys()
        for key, value in _metrics(tuned).items():
            assert value == pytest.approx(alone[key], rel=1e-5, abs=1e-5), (trial.id, key)
    assert store.record(multi_task.config.view("syn_chain").id).status == Status.DONE


def _kill_rank_after_first_checkpoint(trial_dir: Path, rank: int, killed: list) -> None:
    """From outside: SIGKILL one worker's process once the trial has a checkpoint."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        checkpoints = trial_dir / "checkpoints"
        if (trial_dir / "workers.json").is_file() and any(checkpoints.glob("ckpt-*.pt")):
            import json

            workers = json.loads((trial_dir / "workers.json").read_text())
            os.kill(workers[rank]["pid"], signal.SIGKILL)
            killed.append(workers[rank]["pid"])
            return
        time.sleep(0.01)


@pytest.mark.slow  # a killed-and-restarted Ray Train run and an uninterrupted one
def test_a_killed_worker_resumes_from_the_checkpoint_bit_identically(cluster, tmp_path: Path):
    # Dropout on: every rank's RNG state must come back from the checkpoint.
    plan = _plan({"pretrain": {"workers": 2, "cpus_per_worker": 1}}, steps=60, dropout=0.1, every=5)
    trial = plan.pretrain[0]
    only = {trial.id}

    straight = RunStore(tmp_path / "straight")
    assert run_plan(plan, straight, SOURCE, address=cluster.address, only=only).failed == []

    killed_store = RunStore(tmp_path / "killed")
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_rank_after_first_checkpoint,
        args=(killed_store.trial_dir(trial.id), 1, killed),
        daemon=True,
    )
    killer.start()
    summary = run_plan(plan, killed_store, SOURCE, address=cluster.address, only=only)
    killer.join(timeout=5)
    assert killed, "rank 1 was never killed"
    assert summary.failed == []

    record = killed_store.record(trial.id)
    assert record.status == Status.DONE
    assert record.timings.worker_group_starts == 2  # Ray Train restarted the workers
    assert record.timings.attempt == 1  # ... inside the same Tune trial
    assert 0 < record.timings.resumed_from_step < 60
    assert killed[0] not in {w.pid for w in record.workers}
    expected = _weights(straight.trial_dir(trial.id))
    got = _weights(killed_store.trial_dir(trial.id))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert _metrics(record) == _metrics(straight.record(trial.id))
    assert record.history == straight.record(trial.id).history


@pytest.mark.slow  # one Ray Train run
def test_a_failing_trial_fails_with_its_ranks_error_not_a_hang(cluster, tmp_path: Path):
    resources = {"worker_restarts": 0, "pretrain": {"workers": 2, "cpus_per_worker": 1}}
    plan = _plan(resources, learning_rate=1e38)  # the loss is not finite by the second step
    trial = plan.pretrain[0]
    store = RunStore(tmp_path / "run")
    summary = run_plan(plan, store, SOURCE, address=cluster.address, only={trial.id})
    assert summary.failed == [trial.id]
    error = store.record(trial.id).error
    assert error.startswith("data-parallel workers failed: rank 0: FloatingPointError: loss became")
    assert "rank 1: FloatingPointError" in error


def test_a_worker_no_node_can_hold_fails_at_once(cluster, tmp_path: Path):
    plan = _plan({"pretrain": {"workers": 2, "cpus_per_worker": 2}})
    store = RunStore(tmp_path / "run")
    started = time.perf_counter()
    with pytest.raises(UserError) as caught:
        run_plan(plan, store, SOURCE, address=cluster.address)
    seconds = time.perf_counter() - started
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("resources.pretrain.cpus_per_worker = 2: one worker")
    assert "the Ray cluster's 2 nodes have: 1 CPU, 0 GPU (x2)" in message
    assert not (store.root / "trials").exists()  # nothing ran
    assert seconds < 60, seconds  # never a wait for resources that cannot come


def test_failures_name_the_rank_that_caused_them():
    failures = {
        0: RuntimeError("...\n[gloo] Connection closed by peer [10.0.0.1]:1234"),
        1: RuntimeError("Traceback ...\nActorDiedError: the actor died unexpectedly"),
        2: FloatingPointError("loss became nan at pre-training step 3"),
    }
    assert describe_failures(failures) == (
        "data-parallel workers failed: rank 1: ActorDiedError: the actor died unexpectedly; "
        "rank 2: FloatingPointError: loss became nan at pre-training step 3; "
        "rank 0: [gloo] Connection closed by peer [10.0.0.1]:1234"
    )
