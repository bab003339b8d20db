"""One cache entry built in a spawned process while this one builds others: pretraining runs on one thread,
so two builds side by side keep two cores busy (the image kind's encoder beside its dataset and LM;
deco.demo.images.assets).

The child gets a builder factory, a module-level function so that it pickles by reference into the clean
interpreter, and its arguments: `factory(*args, status, progress)` returns the build function that
deco.demo.core.cache writes the entry with. Its steps come back to `progress` as they happen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deco.demo.core.cache import _cached

BuilderFactory = Callable[..., Callable[[Path], dict[str, Any]]]


def _child(factory: BuilderFactory, args: tuple[Any, ...], root: str, name: str, rebuild: bool, queue: Any) -> None:
    """The build in a spawned process: ("step", done, total) while it trains, then ("done", folder, report,
    fresh) or ("error", exception)."""
    try:
        build = factory(*args, lambda _: None, lambda done, total: queue.put(("step", done, total)))
        folder, report, fresh = _cached(Path(root), name, rebuild, build)
        queue.put(("done", str(folder), report, fresh))
    except BaseException as exc:  # handed to the parent, which raises it
        queue.put(("error", exc if isinstance(exc, Exception) else RuntimeError(repr(exc))))


class SpawnedBuild:
    """A cache entry built in a spawned process; its steps reach `progress` when the parent collects them."""

    def __init__(self, factory: BuilderFactory, args: tuple[Any, ...], root: Path, name: str, rebuild: bool,
                 progress: Callable[[int, int], None] | None, process_name: str = "deco-demo-encoder") -> None:
        import multiprocessing
        import threading

        context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch thread pools
        self._queue = context.Queue()
        self._process = context.Process(target=_child, name=process_name, daemon=True,
                                        args=(factory, args, str(root), name, rebuild, self._queue))
        self._process.start()
        self._progress = progress
        self._outcome: tuple[Any, ...] | None = None
        # A thread relays the steps as they come, so bars move while this process builds the other assets.
        self._relay = threading.Thread(target=self._forward, name="deco-encoder-progress", daemon=True)
        self._relay.start()

    def _forward(self) -> None:
        import queue

        while self._outcome is None:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._process.is_alive():  # died without a word (killed, out of memory)
                    self._outcome = ("error", RuntimeError(
                        f"the encoder process ended with exit code {self._process.exitcode} before finishing"))
                continue
            if item[0] == "step":
                if self._progress is not None:
                    self._progress(item[1], item[2])
            else:
                self._outcome = item

    def result(self) -> tuple[Path, dict[str, Any], bool]:
        """Wait for the build; its error is raised here."""
        self._relay.join()
        self._process.join(30)
        assert self._outcome is not None
        if self._outcome[0] == "error":
            raise self._outcome[1]
        _, folder, report, fresh = self._outcome
        return Path(folder), report, fresh

    def cancel(self) -> None:
        """Stop the process (this process failed; its temp folder is removed by the next build)."""
        self._process.terminate()
        self._process.join(10)
        self._relay.join(5)
