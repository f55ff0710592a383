"""Describe the local machine, so measurements are keyed by where they were taken."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

from storage import HardwareRecord


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def _gpus() -> tuple[str | None, int, float | None]:
    """GPU model, count and memory, read through torch only when it is already loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None, 0, None
    properties = torch.cuda.get_device_properties(0)
    return properties.name, torch.cuda.device_count(), round(properties.total_memory / 2**30, 1)


def fingerprint_of(cpu_model: str, cpu_cores: int, memory_gib: float, gpu_model: str | None,
                   gpu_count: int) -> str:
    """A short stable hash of what decides decode speed; memory rounded to whole GiB."""
    key = f"{cpu_model}|{cpu_cores}|{round(memory_gib)}|{gpu_model}|{gpu_count}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def describe_local_hardware() -> HardwareRecord:
    """Return this machine's CPU, core count, memory and GPUs (if torch sees any)."""
    cpu_model = _cpu_model()
    cpu_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1
    )
    memory_gib = _memory_gib()
    gpu_model, gpu_count, gpu_memory_gib = _gpus()
    return HardwareRecord(
        fingerprint=fingerprint_of(cpu_model, cpu_cores, memory_gib, gpu_model, gpu_count),
        cpu_model=cpu_model,
        cpu_cores=cpu_cores,
        memory_gib=memory_gib,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        gpu_memory_gib=gpu_memory_gib,
    )
