"""Library versions and the machine a run (or benchmark) ran on, for the run directory."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

_LIBRARIES = ("deco-vlm", "torch", "transformers", "accelerate", "safetensors", "tokenizers", "numpy", "deepspeed")


def cpu_model() -> str:
    """CPU model name (Linux /proc/cpuinfo, else platform.processor())."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, Any]:
    """Python, platform and installed library versions (None for those not installed)."""
    libs: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "libraries": libs}


def machine() -> dict[str, Any]:
    """CPU, core count, torch threads and GPUs."""
    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
