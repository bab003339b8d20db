"""Flat, fork- and mmap-friendly columns for a dataset's per-sample metadata.

A list of 665K Python strings or tuples costs tens of bytes of object header each and, worse, every
DataLoader worker that reads one writes its reference count, so the page it sits on is copied into
the worker: a forked worker's memory creeps up step after step (copy-on-access). Here the strings of
a column live in one uint8 buffer with an int64 offset array, which workers share untouched (and
which a cached index maps from disk, shared between ranks through the page cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class StringColumn(Sequence[str]):
    """Strings in one UTF-8 buffer: column[i] decodes the i-th."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        if offsets.ndim != 1 or len(offsets) < 1 or int(offsets[-1]) != len(blob):
            raise ValueError("StringColumn: offsets must end at the buffer's length")
        self.blob, self.offsets = blob, offsets

    @classmethod
    def of(cls, items: Iterable[str]) -> StringColumn:
        """A column holding `items` in order."""
        encoded = [s.encode("utf-8") for s in items]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"StringColumn index {index} out of range for {len(self)} strings")
        index %= len(self)
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        return bytes(self.blob[lo:hi]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        data = bytes(self.blob)
        bounds = self.offsets.tolist()
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            yield data[lo:hi].decode("utf-8")

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The column as named arrays (for saving)."""
        return {f"{name}.blob": self.blob, f"{name}.offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str) -> StringColumn:
        """The column `arrays(name)` saved."""
        return cls(arrays[f"{name}.blob"], arrays[f"{name}.offsets"])


def ragged_offsets(counts: Sequence[int]) -> np.ndarray:
    """[0, c0, c0+c1, ...]: where each sample's run of items starts in a flat array (int64)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.asarray(counts, dtype=np.int64), out=offsets[1:])
    return offsets
