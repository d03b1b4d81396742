"""What a trial ran on, in words: the CPU's model and count, and the GPU's name when it used one.

Recorded per rank with each trial (orchestrate/rank.py) so that a report can say which machines
its numbers came from: a CPU's floating-point details can decide whether a fine-tuning restart
learns or stalls, so a reader comparing numbers needs to know the machine, not just the versions.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo's "model name"), else what Python knows."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass  # not Linux: platform's answer is the best there is
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine(device: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """E.g. "Intel(R) Xeon(R) Processor, 2 CPUs" or "..., 16 CPUs, NVIDIA H200" (on `device`)."""
    text = f"{cpu_model(cpuinfo)}, {os.cpu_count() or 1} CPUs"
    if device.startswith("cuda"):
        import torch

        text += f", {torch.cuda.get_device_name(torch.device(device))}"
    return text
