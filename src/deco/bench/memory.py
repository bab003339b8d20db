"""Peak memory of a block of work (CPU and GPU), and what a model's state costs in bytes.

On a GPU, `torch.cuda.max_memory_allocated` is the peak of tensor bytes. A CPU has no such
counter, and neither tracemalloc (torch allocates outside Python's allocator) nor the process RSS
(glibc keeps freed pages, and the high-water mark cannot be reset) gives a per-step peak. So on
CPU a dispatch mode watches every tensor storage the block creates and when it is freed: the same
quantity as the GPU counter (tensor bytes, not allocator caches or kernel scratch space).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _StorageWatch(TorchDispatchMode):
    """Counts bytes of storages created inside the mode until they are freed; keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            # Views and in-place/out= results reuse an input's storage: not a new allocation.
            if storage.data_ptr() in inputs or id(storage) in self._sizes:
                continue
            size = storage.nbytes()
            self._sizes[id(storage)] = size
            self.live += size
            self.peak = max(self.peak, self.live)
            # Storage Python objects live as long as the storage itself, so this fires on free.
            weakref.finalize(storage, self._free, id(storage))
        return out


class MemoryProbe:
    """`with MemoryProbe(device) as m: ...` -> m.peak: peak tensor bytes above the level at entry.

    `m.current()` inside the block gives the bytes held right now (above the entry level).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.peak = 0
        self._watch: _StorageWatch | None = None
        self._base = 0

    def __enter__(self) -> MemoryProbe:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._watch = _StorageWatch()
            self._watch.__enter__()
        return self

    def current(self) -> int:
        """Bytes allocated since entry and still held."""
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated() - self._base
        return self._watch.live if self._watch is not None else 0

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        elif self._watch is not None:
            self._watch.__exit__(*exc)
            self.peak = self._watch.peak


def parameter_bytes(module: nn.Module, trainable_only: bool = False) -> int:
    """Bytes of a module's parameters (optionally only those that require grad)."""
    return sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad or not trainable_only)


def available_memory(device: torch.device | str) -> int | None:
    """Bytes the benchmark may use: free GPU memory, or MemAvailable on Linux; None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gib(n: float | None) -> str:
    """Bytes as a short GiB/MiB/KiB string."""
    if n is None:
        return "-"
    if abs(n) >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if abs(n) >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**10:.0f} KiB"
