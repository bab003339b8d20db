"""What the benchmark ran on: CPU model, cores, memory, GPU, library versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (Linux); empty elsewhere."""
    file = Path("/proc/cpuinfo")
    if not file.is_file():
        return {}
    info: dict[str, str] = {}
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def _total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def describe_machine(device: str) -> dict[str, Any]:
    """CPU model and cores, RAM, GPU (name, memory, capability) when `device` is cuda, versions."""
    import transformers

    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    cpu_model = info.get("model name") or platform.processor() or platform.machine()
    machine: dict[str, Any] = {
        "cpu": cpu_model,
        "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}" if info else None,
        "cpu_vector_units": vector,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": _total_memory_bytes(),
        "hypervisor": "hypervisor" in flags,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
        "gpu": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        machine["gpu"] = {
            "name": props.name,
            "memory_bytes": props.total_memory,
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
            "count": torch.cuda.device_count(),
        }
    return machine


def machine_line(machine: dict[str, Any]) -> str:
    """One line naming the machine, for tables and the README."""
    gib = (machine.get("memory_bytes") or 0) / 2**30
    text = f"{machine['cpu']}, {machine['logical_cores']} logical cores, {gib:.0f} GiB RAM"
    if machine.get("gpu"):
        gpu = machine["gpu"]
        text = f"{gpu['name']} ({gpu['memory_bytes'] / 2**30:.0f} GiB); host: " + text
    return f"{text}; torch {machine['torch']}, transformers {machine['transformers']}"
