"""The training DataLoader: worker processes sized to the cores (or, with none, a read-ahead thread),
prefetching, pinned memory on CUDA.

Data order is the BatchPlan's alone (StepBatchSampler), so the worker count never changes what a
step trains on, and a resumed run may use another count than the run it continues.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from deco.config import DataSection
from deco.errors import ConfigError
from deco.train.loading.batches import BatchPlan, StepBatchSampler
from deco.train.loading.prefetch import PrefetchedLoader
from deco.train.loading.wire import ReceivedBatches, SendSmallByValue
from deco.train.rundir.stopping import ignore_stop_signals

# More workers than this rarely help one process (JPEG decode + resize is ~14 ms per sample on one
# core, so 8 workers feed ~570 samples/s) and each holds a copy of the dataset's index.
MAX_WORKERS = 8


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_workers(device_type: str, cores: int, threads: int, processes: int = 1) -> int:
    """data.num_workers=auto: loader processes for one training process.

    - GPU: the GPU computes, so the host's cores (shared by the `processes` local ranks) decode data;
      one stays with the training process itself.
    - CPU: the cores torch's compute threads leave free (deco's commands default to one thread, so on
      2 cores one worker: 0.052 s per tiny step against 0.062 s loading in-process). None when the
      threads take every core: a worker then only takes compute from the step. Callers that run several
      jobs side by side (the demo) pass data.num_workers 0 themselves.
    """
    share = max(1, cores // max(1, processes))
    if device_type == "cuda":
        return max(1, min(MAX_WORKERS, share - 1))
    return max(0, min(MAX_WORKERS, share - threads))


def die_with_parent(worker_id: int) -> None:
    """worker_init_fn: on Linux, the kernel kills this worker when the training process dies.

    Without it, a worker of a killed run (SIGKILL, OOM) lives on: torch's watchdog ends its loop,
    but exiting joins the queue's feeder thread, which blocks forever on a pipe nobody reads once a
    batch larger than the pipe is in flight. The orphan then holds the run's inherited files (its
    lock, the caller's stdout) indefinitely.
    """
    ignore_stop_signals()  # SIGTERM / SIGINT to the process group: the training process stops cleanly
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1  # from <sys/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # died before the line above took effect
        os._exit(1)


@dataclass
class LoaderSettings:
    """What the loader was built with (logged, and printed by `deco bench`)."""

    num_workers: int
    prefetch_factor: int | None
    pin_memory: bool
    persistent_workers: bool
    how: str
    # Workers send tensors up to wire.BY_VALUE_MAX_BYTES by value (CPU on Linux, where workers die with
    # their parent; on CUDA all go through shared memory, where the loader pins them).
    small_by_value: bool = False
    # With no workers: micro-batches read ahead on a background thread (0: on the training thread).
    thread_depth: int = 0

    def describe(self) -> str:
        """One line for logs."""
        if not self.num_workers:
            where = (f"read {self.thread_depth} micro-batches ahead on a thread" if self.thread_depth
                     else "on the training thread")
            return f"data loader: in-process, {where} ({self.how})"
        return (f"data loader: {self.num_workers} worker(s) ({self.how}), prefetch {self.prefetch_factor} "
                f"batches each, pin_memory {self.pin_memory}")


def use_thread(setting: bool | str, device_type: str) -> bool:
    """data.prefetch_thread: true, false, or auto. Auto reads ahead on a thread on CUDA, where the
    training thread mostly waits for kernels; not on a CPU, where the thread competes with the step for
    the GIL and the cores: on the 2-core VM it was no faster than loading on the training thread at a
    thread per core (1.02-1.20x slower steps in three runs), and where a core is free a worker process
    is faster (benchmarks/results/train_speed_cpu.json)."""
    if setting == "auto":
        return device_type == "cuda"
    if not isinstance(setting, bool):
        raise ConfigError(f"data.prefetch_thread must be true, false or 'auto', got {setting!r}")
    return setting


def loader_settings(data: DataSection, device: torch.device, accum: int) -> LoaderSettings:
    """Workers (data.num_workers or the auto rule), prefetch depth and pinning for this device."""
    requested = data.num_workers
    if requested == "auto":
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by torchrun / accelerate launch
        cores, threads = usable_cores(), torch.get_num_threads()
        workers = auto_workers(device.type, cores, threads, processes)
        how = f"auto: {cores} core(s), {threads} torch thread(s), {processes} local process(es)"
    else:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
            raise ConfigError(f"data.num_workers must be 'auto' or a whole number >= 0, got {requested!r}")
        workers, how = requested, "data.num_workers"
    # Each optimizer step takes `accum` micro-batches at once: queue two steps' worth (across the
    # workers, or on the read-ahead thread when there are none).
    prefetch = max(2, math.ceil(2 * accum / workers)) if workers else None
    thread_depth = 2 * accum if not workers and use_thread(data.prefetch_thread, device.type) else 0
    cuda = device.type == "cuda"
    by_value = workers > 0 and not cuda and sys.platform.startswith("linux")
    return LoaderSettings(workers, prefetch, cuda, workers > 0, how, by_value, thread_depth)


def build_loader(
    dataset: Dataset, plan: BatchPlan, rank: int, epoch: int, step_in_epoch: int, num_steps: int,
    collate: Callable[[list[Any]], dict[str, Any]], settings: LoaderSettings, seed: int,
) -> Iterable[dict[str, Any]]:
    """This rank's micro-batches from (epoch, step_in_epoch) for num_steps optimizer steps: the
    DataLoader (its workers sending small tensors by value on a CPU), or with no workers and a thread
    depth, the DataLoader read ahead on a thread."""
    loader = DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(plan, rank, epoch, step_in_epoch, num_steps),
        collate_fn=SendSmallByValue(collate) if settings.small_by_value else collate,
        num_workers=settings.num_workers,
        prefetch_factor=settings.prefetch_factor,
        persistent_workers=settings.persistent_workers,
        pin_memory=settings.pin_memory,
        worker_init_fn=die_with_parent if settings.num_workers else None,
        # Its own generator: creating the iterator must not draw from the global RNG (exact resume).
        generator=torch.Generator().manual_seed(seed),
    )
    if settings.small_by_value:
        return ReceivedBatches(loader)
    return PrefetchedLoader(loader, settings.thread_depth) if settings.thread_depth else loader
