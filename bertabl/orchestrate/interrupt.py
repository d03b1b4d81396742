"""Stopping a run on request: SIGTERM (a batch scheduler's time limit, `scancel`, the Slurm
script's forwarded `--signal`) or Ctrl-C (SIGINT).

The run stops its trials, records none of them as failed, writes the report of what finished
and exits with INTERRUPTED_EXIT; `bertabl resume RUN_DIR` (or the same `bertabl run`) then
continues each unfinished trial from its latest checkpoint, to the same numbers on CPU. The work
since a trial's last checkpoint (`checkpointing.every_steps`, each fine-tuning epoch) is redone.

Ray Tune's own SIGINT handler stops a Tune run gracefully too, but leaves no trace of why, so
the trials it stopped would look like trials that ended without a result (failed); `ray.init`
replaces the SIGTERM handler with an immediate exit. So bertabl installs its own handlers
around each part of a run (after `ray.init`) and tells Tune through a Stopper.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# `bertabl run`/`resume` stopped on request (resumable) exits with this; the Slurm script reads it
INTERRUPTED_EXIT = 3
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(Exception):
    """Raised where nothing polls the request (data preparation): stop right there."""


class StopRequest:
    """Whether (and by which signal) this run was asked to stop."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def request(self, signal_name: str) -> None:
        self.signal_name = signal_name

    @contextlib.contextmanager
    def catching(self, raise_now: bool) -> Iterator[None]:
        """SIGTERM/SIGINT request a stop while inside; `raise_now` raises RunInterrupted from the
        handler (for code that never looks at the request). A second Ctrl-C stops at once
        (KeyboardInterrupt), as users expect of an impatient second press."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def handle(signum: int, frame) -> None:
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request(signal.Signals(signum).name)
            if raise_now:
                raise RunInterrupted(self.signal_name)

        previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, handle)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
