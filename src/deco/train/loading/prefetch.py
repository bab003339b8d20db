"""In-process loading on a background thread: the next micro-batches are read while the step computes.

With zero worker processes (a CPU run whose torch threads take every core, or data.num_workers: 0) the
DataLoader otherwise decodes each micro-batch on the training thread, and the step waits for it.
Decoding and resizing (PIL) and most tensor work release the GIL, so a thread overlaps them with the
step without a second process's start-up, pickling and shared-memory copies. The order of batches is
the DataLoader's own (its sampler runs on the thread, one batch after another), so a run is the same
with or without the thread; nothing on the data path draws from a global RNG.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

# How long a blocked put waits before it looks at the stop flag again (seconds).
_POLL_S = 0.1


class PrefetchedLoader:
    """Iterable over `loader`'s batches, `depth` of them read ahead on a daemon thread per iterator."""

    def __init__(self, loader: Iterable[Any], depth: int) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self.loader, self.depth = loader, depth

    def __iter__(self) -> ThreadPrefetcher:
        # iter() here, on the caller's thread: creating the DataLoader iterator draws its base seed from
        # the loader's own generator, and that must happen in a fixed place.
        return ThreadPrefetcher(iter(self.loader), self.depth)


class ThreadPrefetcher:
    """An iterator that a thread fills; the thread's exceptions are raised where the batch is taken.

    The thread holds the queue and the stop flag, not this object, so dropping the iterator (a run that
    stopped early) stops the thread too.
    """

    def __init__(self, source: Iterator[Any], depth: int) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=_fill, args=(source, self._queue, self._stop),
                                        name="deco-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> ThreadPrefetcher:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "batch":
            return value
        self._done = True
        self._thread.join()
        if kind == "error":
            # The loader's own exception (a DataError naming the file and sample, say), as if raised here.
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead (the thread ends after its current batch)."""
        self._stop.set()
        self._done = True

    def __del__(self) -> None:
        self._stop.set()


def _fill(source: Iterator[Any], out: queue.Queue[tuple[str, Any]], stop: threading.Event) -> None:
    """The thread: every batch of `source`, then an end mark or the exception that ended it."""
    try:
        for batch in source:
            if not _put(out, ("batch", batch), stop):
                return
        _put(out, ("end", None), stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
        _put(out, ("error", exc), stop)


def _put(out: queue.Queue[tuple[str, Any]], item: tuple[str, Any], stop: threading.Event) -> bool:
    """Queue `item`, giving up (False) once the consumer stopped."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
