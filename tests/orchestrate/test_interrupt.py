"""Stop requests: SIGTERM/SIGINT set the request (and raise where nothing polls it), a second
Ctrl-C stops at once, the previous handlers come back."""

from __future__ import annotations

import os
import signal

import pytest

from bertabl.orchestrate.interrupt import RunInterrupted, StopRequest


def test_sigterm_requests_a_stop_that_tune_polls():
    stop = StopRequest()
    before = signal.getsignal(signal.SIGTERM)
    with stop.catching(raise_now=False):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_where_nothing_polls_the_signal_raises():
    stop = StopRequest()
    with pytest.raises(RunInterrupted), stop.catching(raise_now=True):
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.signal_name == "SIGINT"


def test_a_second_ctrl_c_stops_at_once():
    stop = StopRequest()
    with pytest.raises(KeyboardInterrupt), stop.catching(raise_now=False):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        os.kill(os.getpid(), signal.SIGINT)
