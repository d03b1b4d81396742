"""The searcher that runs every stage in one Tune run: pre-training first, each fine-tune as
soon as its own pre-training has settled, a test-split scoring once its cell's fine-tunes have;
blocked (never suggested) when what it needs failed."""

from __future__ import annotations

from ray.tune.search import Searcher

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.dependencies import DependencySearcher
from bertabl.orchestrate.run import _waiting
from tests.conftest import TINY_MATRIX


def _plan():
    return build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))


def _searcher(plan, released: list, blocked: list, pretrain=None, tests=()):
    def release(stage, trial, failed: set) -> bool:
        (blocked if failed else released).append(trial.id)
        return not failed

    waiting = _waiting(plan.pretrain if pretrain is None else pretrain, plan.finetune, tests)
    return DependencySearcher(waiting, lambda stage, trial: {"id": trial.id}, release)


def test_fine_tunes_wait_for_their_own_pretraining_only():
    released, blocked = [], []
    plan = _plan()
    searcher = _searcher(plan, released, blocked)
    first, second = plan.pretrain
    assert searcher.suggest("t0") == {"id": first.id}
    assert searcher.suggest("t1") == {"id": second.id}
    assert searcher.suggest("t2") is None  # nothing may start: Tune asks again later
    searcher.on_trial_complete("t1")  # the second pre-training finishes first
    mine = {t.id for t in plan.finetune if t.pretrain_id == second.id}
    started = []
    while (suggestion := searcher.suggest(f"t{3 + len(started)}")) is not None:
        started.append(suggestion["id"])
    assert set(started) == mine
    assert released == [first.id, second.id, *started]  # pre-trainings are released too
    searcher.on_trial_complete("t0", error=True)  # the first fails: its fine-tunes are blocked
    assert searcher.suggest("t99") == Searcher.FINISHED
    assert set(blocked) == {t.id for t in plan.finetune if t.pretrain_id == first.id}


def test_a_finished_pretraining_from_an_earlier_run_releases_at_once():
    plan = _plan()
    searcher = _searcher(plan, [], [], pretrain=[])
    suggested = [searcher.suggest(f"t{i}")["id"] for i in range(len(plan.finetune))]
    assert suggested == [t.id for t in plan.finetune]
    assert searcher.suggest("last") == Searcher.FINISHED


class _Scoring:
    """A stand-in test-split scoring waiting on two of the fine-tunes."""

    def __init__(self, needs):
        self.id, self.depends_on = "te-00000000", needs


def _started(plan, searcher) -> dict[str, str]:
    """Suggest every fine-tune; bertabl's id -> the Tune id it was suggested as."""
    return {searcher.suggest(f"t{i}")["id"]: f"t{i}" for i in range(len(plan.finetune))}


def test_a_test_scoring_waits_for_every_trial_of_its_cell():
    released, blocked = [], []
    plan = _plan()
    cell = [t.id for t in plan.finetune[:2]]
    searcher = _searcher(plan, released, blocked, pretrain=[], tests=[_Scoring(cell)])
    names = _started(plan, searcher)
    assert searcher.suggest("wait") is None  # its cell is still running
    searcher.on_trial_complete(names[cell[0]])
    assert searcher.suggest("wait") is None
    searcher.on_trial_complete(names[cell[1]])
    assert searcher.suggest("test") == {"id": "te-00000000"}
    assert blocked == [] and released[-1] == "te-00000000"


def test_a_failed_fine_tune_reaches_the_release_of_its_cells_scoring():
    released, blocked = [], []
    plan = _plan()
    cell = [t.id for t in plan.finetune[:2]]
    searcher = _searcher(plan, released, blocked, pretrain=[], tests=[_Scoring(cell)])
    names = _started(plan, searcher)
    searcher.on_trial_complete(names[cell[0]])
    searcher.on_trial_complete(names[cell[1]], error=True)  # failed: settled, and reported
    assert searcher.suggest("test") == Searcher.FINISHED  # this release blocks on a failure
    assert blocked == ["te-00000000"]


def test_data_parallel_trials_start_only_as_many_as_the_cluster_places_together():
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    first, second = plan.pretrain
    searcher = DependencySearcher(
        _waiting(plan.pretrain, plan.finetune, []),
        lambda stage, trial: {"id": trial.id},
        lambda stage, trial, failed: True,
        admits={"pretrain": 1, "finetune": None},  # one 2-worker trial fits at a time
    )
    assert searcher.suggest("t0") == {"id": first.id}
    assert searcher.suggest("t1") is None  # the second waits for room, not for its workers
    searcher.on_trial_complete("t0")
    # the first's fine-tunes (single-worker, no limit) and the second pre-training may go now
    assert searcher.suggest("t2") == {"id": second.id}
    mine = [t.id for t in plan.finetune if t.pretrain_id == first.id]
    assert [searcher.suggest(f"f{i}")["id"] for i in range(len(mine))] == mine
