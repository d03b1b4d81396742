"""The run's data-preparation step: before any trial starts, build what pre-training reads.

Its own step (and not the first trial's) so that the corpus is tokenised once with every core
of the machine, while no trial holds CPUs, and so a paper-scale preparation shows as what it is,
with a progress bar and an ETA, rather than as a trial that seems stuck. Trials then only map the
token store (data/token_store.py). Runs in the driver, before Ray starts.
"""

from __future__ import annotations

import time

from bertabl.data.preparation_jobs import data_jobs, run_job
from bertabl.matrix.plan import PretrainTrial
from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.store import RunStore


def prepare_data(trials: list[PretrainTrial], store: RunStore, observer: RunObserver) -> None:
    """Train vocabularies and build token stores that `trials` need and the run lacks."""
    for job in data_jobs((t.id, t.config) for t in trials):
        if job.prepared(store.cache_dir):
            continue
        started = time.perf_counter()
        meta = run_job(job, store.cache_dir, observer.preparing, observer.prepare_progress)
        seconds = time.perf_counter() - started
        observer.prepared(
            f"{job.corpus}: {meta['tokens']:,} tokens in {meta['documents']:,} documents "
            f"({meta['dtype']}), {seconds:.1f} s with {meta['workers']} process(es)",
            seconds,
        )
