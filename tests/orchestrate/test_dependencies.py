"""The searcher that runs both stages in one Tune run: pre-training first, each fine-tune as
soon as its own pre-training has settled, blocked (never suggested) when that failed."""

from __future__ import annotations

from ray.tune.search import Searcher

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.dependencies import DependencySearcher
from tests.conftest import TINY_MATRIX


def _searcher(released: list, blocked: list):
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))

    def release(trial, failed: bool) -> bool:
        (blocked if failed else released).append(trial.id)
        return not failed

    searcher = DependencySearcher(
        plan.pretrain, plan.finetune, lambda stage, trial: {"id": trial.id}, release
    )
    return plan, searcher


def test_fine_tunes_wait_for_their_own_pretraining_only():
    released, blocked = [], []
    plan, searcher = _searcher(released, blocked)
    first, second = plan.pretrain
    assert searcher.suggest("t0") == {"id": first.id}
    assert searcher.suggest("t1") == {"id": second.id}
    assert searcher.suggest("t2") is None  # nothing may start: Tune asks again later
    searcher.on_trial_complete("t1")  # the second pre-training finishes first
    mine = {t.id for t in plan.finetune if t.pretrain_id == second.id}
    started = []
    while (suggestion := searcher.suggest(f"t{3 + len(started)}")) is not None:
        started.append(suggestion["id"])
    assert set(started) == mine and released == started
    searcher.on_trial_complete("t0", error=True)  # the first fails: its fine-tunes are blocked
    assert searcher.suggest("t99") == Searcher.FINISHED
    assert set(blocked) == {t.id for t in plan.finetune if t.pretrain_id == first.id}


def test_a_finished_pretraining_from_an_earlier_run_releases_at_once():
    released, blocked = [], []
    plan, _ = _searcher(released, blocked)
    searcher = DependencySearcher([], plan.finetune, lambda s, t: {"id": t.id}, lambda t, f: True)
    suggested = [searcher.suggest(f"t{i}")["id"] for i in range(len(plan.finetune))]
    assert suggested == [t.id for t in plan.finetune]
    assert searcher.suggest("last") == Searcher.FINISHED


def test_data_parallel_trials_start_only_as_many_as_the_cluster_places_together():
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    first, second = plan.pretrain
    searcher = DependencySearcher(
        plan.pretrain,
        plan.finetune,
        lambda stage, trial: {"id": trial.id},
        lambda trial, failed: True,
        admits={"pretrain": 1, "finetune": None},  # one 2-worker trial fits at a time
    )
    assert searcher.suggest("t0") == {"id": first.id}
    assert searcher.suggest("t1") is None  # the second waits for room, not for its workers
    searcher.on_trial_complete("t0")
    # the first's fine-tunes (single-worker, no limit) and the second pre-training may go now
    assert searcher.suggest("t2") == {"id": second.id}
    mine = [t.id for t in plan.finetune if t.pretrain_id == first.id]
    assert [searcher.suggest(f"f{i}")["id"] for i in range(len(mine))] == mine
