"""The report footer's machines line, from the records' per-rank machine."""

from __future__ import annotations

from bertabl.report.provenance import machines_of


def _record(status: str, *machines: str) -> dict:
    return {
        "status": status,
        "workers": [{"rank": i, "machine": m} for i, m in enumerate(machines)],
    }


def test_machines_count_finished_trials_once_per_machine():
    records = {
        "pt-1": _record("done", "Xeon, 2 CPUs"),
        "ft-1": _record("done", "Xeon, 2 CPUs"),
        "ft-2": _record("done", "EPYC, 16 CPUs, NVIDIA H200", "EPYC, 16 CPUs, NVIDIA H200"),
        "ft-3": _record("failed", "Xeon, 2 CPUs"),  # only finished trials made the numbers
        "ft-4": {"status": "done", "workers": [{"rank": 0}]},  # recorded before machines were
    }
    assert machines_of(records) == {"Xeon, 2 CPUs": 2, "EPYC, 16 CPUs, NVIDIA H200": 1}
