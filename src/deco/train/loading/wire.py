"""Batches across the worker-process boundary: small tensors by value, large ones in shared memory.

A DataLoader worker hands each tensor of a batch to the training process through shared memory, which
on Linux passes a file descriptor per tensor over a socket: 0.5-1 ms each on the 2-core VM, so a
batch of token ids, labels, attention mask and pixels waited 2-4 ms in `next()` even with the worker
far ahead, 6-7% of a tiny-model step. Small arrays are cheaper to copy through the queue's pipe
(about half the time for the same batch: `worker_handoff` in benchmarks/results/train_speed_cpu.json). Large ones (a batch of 336 px images is ~20 MB) stay in shared memory,
and on CUDA every tensor does, so the loader can pin it for non-blocking copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

# Tensors up to this size travel by value (a pickled NumPy array) rather than by shared memory.
BY_VALUE_MAX_BYTES = 1 << 20
# dtypes NumPy holds exactly (bfloat16, for one, it does not): others always use shared memory.
_NUMPY_DTYPES = {torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool}


class ByValue:
    """A tensor's contents as a NumPy array, pickled with the batch."""

    __slots__ = ("array",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.array = tensor.numpy()


def _send(value: Any) -> Any:
    if (isinstance(value, torch.Tensor) and value.dtype in _NUMPY_DTYPES and not value.requires_grad
            and value.numel() * value.element_size() <= BY_VALUE_MAX_BYTES):
        return ByValue(value.contiguous())
    return value


def _receive(value: Any) -> Any:
    return torch.from_numpy(value.array) if isinstance(value, ByValue) else value


class SendSmallByValue:
    """The collate function a worker runs: the batch dict with its small tensors wrapped by value."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collate = collate

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        return {key: _send(value) for key, value in self.collate(samples).items()}


class ReceivedBatches:
    """Iterable over a worker loader's batches with the by-value tensors rebuilt (no copy)."""

    def __init__(self, loader: Iterable[dict[str, Any]]) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = iter(self.loader)
        try:
            for batch in batches:
                yield {key: _receive(value) for key, value in batch.items()}
        finally:  # closed (the run ended, or failed): stop the workers now, not whenever this is collected
            shutdown_workers(batches)


def shutdown_workers(batches: Any) -> None:
    """Stop a DataLoader iterator's worker processes (a no-op for anything else)."""
    stop = getattr(batches, "_shutdown_workers", None)
    if stop is not None:
        stop()
