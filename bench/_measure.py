"""Machine description for the benchmarks' tables; the measuring helpers (step time, memory of one
step) live in minildm/measure.py, shared with the notebooks, and are re-exported here.

Not a benchmark script (it prints nothing): the scripts of bench/ import it.
"""

import os
import platform
import sys

import torch

from minildm.measure import median_seconds, memory_kind, peak_step_bytes, saved_activation_bytes, sync

__all__ = [
    "cpu_model",
    "machine_lines",
    "median_seconds",
    "memory_kind",
    "peak_step_bytes",
    "saved_activation_bytes",
    "sync",
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines(device: torch.device) -> list[str]:
    """The machine and the command, printed above every table."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    return [
        f"command: python {' '.join(sys.argv)}",
        f"CPU: {cpu_model()}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}",
        f"GPU: {gpu}",
        f"torch {torch.__version__}, python {platform.python_version()}",
    ]
