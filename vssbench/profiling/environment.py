"""Where a measurement ran: the device, torch, threads, Python and platform."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what ``platform`` knows), for timing records."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Where a measurement ran: device description, torch version, threads, Python, platform, CUDA.

    ``device`` is e.g. ``"cpu (AMD EPYC, 2 threads)"`` or the CUDA device's name.
    """
    dev = torch.device(device)
    threads = torch.get_num_threads()
    if dev.type == "cuda":
        description = torch.cuda.get_device_name(dev)
    else:
        description = f"cpu ({cpu_model()}, {threads} threads of {os.cpu_count()} cores)"
    return {
        "device": description,
        "torch": torch.__version__,
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }
