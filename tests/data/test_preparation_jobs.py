"""Data preparation jobs: one per (corpus, tokenizer), a trained vocabulary trained first."""

from __future__ import annotations

from pathlib import Path

from bertabl.data.preparation_jobs import data_jobs, run_job
from bertabl.data.token_store import TokenStore, store_dir
from bertabl.matrix import build_plan, load_matrix
from tests.conftest import TINY_MATRIX


def _plan(tmp_path: Path, *overrides: str):
    path = tmp_path / "m.toml"
    path.write_text(TINY_MATRIX)
    return build_plan(load_matrix(path, list(overrides))[0])


def test_trials_sharing_a_corpus_share_a_job(tmp_path: Path):
    plan = _plan(tmp_path)
    jobs = data_jobs((t.id, t.config) for t in plan.pretrain)
    assert len(jobs) == 1 and jobs[0].trials == tuple(t.id for t in plan.pretrain)
    assert jobs[0].corpus == "synthetic (40 documents)"
    assert jobs[0].tokenizer == "synthetic vocabulary" and jobs[0].vocab_size == 0


def test_a_trained_vocabulary_is_trained_then_the_corpus_tokenised(tmp_path: Path):
    plan = _plan(tmp_path, "data.tokenizer=train", 'pretrain.axes={"vocab_size" = [60, 70]}')
    jobs = data_jobs((t.id, t.config) for t in plan.pretrain)
    assert [j.vocab_size for j in jobs] == [60, 70]  # one job per size, two variants each
    assert all(len(j.trials) == 2 for j in jobs)
    cache, events = tmp_path / "cache", []
    job = jobs[0]
    assert not job.prepared(cache)
    meta = run_job(
        job,
        cache,
        lambda what, total, unit: events.append((what, total, unit)),
        lambda done: events.append(done),
    )
    stages = [e for e in events if isinstance(e, tuple)]
    assert stages == [
        ("training a 60-entry WordPiece vocabulary", 40.0, "documents"),
        ("tokenising synthetic (40 documents)", 40.0, "documents"),
    ]
    assert events[-1] == 40.0  # the whole corpus read
    assert job.prepared(cache) and job.vocab_file(cache).is_file()
    store = TokenStore.open(store_dir(job.data, cache, 60))
    assert store.vocab_size == 60 and Path(meta["path"]) == store.path
    assert meta["documents"] == 40 and "vocabulary_seconds" in meta and "store_seconds" in meta
    events.clear()
    run_job(job, cache, lambda *a: events.append(a), events.append)
    assert events == []  # nothing left to do
