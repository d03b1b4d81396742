"""The machine a trial ran on, in words."""

from __future__ import annotations

import os
from pathlib import Path

from bertabl.machine import cpu_model, describe_machine


def test_cpu_model_reads_proc_cpuinfo(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n"
    )
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Gold 6338"


def test_without_cpuinfo_it_still_names_something(tmp_path: Path):
    assert cpu_model(tmp_path / "absent")  # platform's answer, never empty


def test_describe_machine_on_cpu_counts_the_cpus(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AMD EPYC 7B13\n")
    assert describe_machine("cpu", cpuinfo) == f"AMD EPYC 7B13, {os.cpu_count()} CPUs"
