"""Loading on a read-ahead thread (data.prefetch_thread): same batches in the same order, the loader's
errors raised where the batch is taken, the thread stops with its consumer, and training is unchanged."""

from __future__ import annotations

import gc
import threading
import time

import pytest
import torch
from torch.utils.data import Dataset

from deco.config import DataSection, load_config
from deco.errors import ConfigError, DataError
from deco.train import run_training
from deco.train.loading.batches import BatchPlan
from deco.train.loading.loader import build_loader, loader_settings, use_thread
from deco.train.loading.prefetch import PrefetchedLoader
from deco.train.report.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class Numbers(Dataset):
    """Sample i is {"sample_id": i}; index `bad` raises the DataError a corrupt image would."""

    def __init__(self, n: int, bad: int | None = None) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if i == self.bad:
            raise DataError(f"train.json: sample 's{i}': cannot decode image img{i}.png")
        return {"sample_id": i}


def collate(samples: list[dict]) -> dict:
    return {"sample_ids": [s["sample_id"] for s in samples]}


def _ids(loader) -> list[list[int]]:
    return [b["sample_ids"] for b in loader]


def _loader(data: Dataset, thread: bool, steps: int = 6):
    plan = BatchPlan(len(data), 4, 2, 1, seed=3)  # global 4 = 2 per micro-batch x 2 accumulation
    settings = loader_settings(DataSection(num_workers=0, prefetch_thread=thread), torch.device("cpu"), plan.accum)
    return build_loader(data, plan, 0, 0, 0, steps, collate, settings, seed=3)


def test_the_thread_yields_the_same_batches_in_the_same_order():
    plain, threaded = _loader(Numbers(10), False), _loader(Numbers(10), True)
    assert isinstance(threaded, PrefetchedLoader) and not isinstance(plain, PrefetchedLoader)
    want = _ids(plain)
    assert len(want) == 12 and _ids(threaded) == want
    assert _ids(threaded) == want  # a second pass starts a fresh thread from the start


def test_settings_read_two_optimizer_steps_ahead_only_without_workers():
    cpu = torch.device("cpu")
    on = loader_settings(DataSection(num_workers=0, prefetch_thread=True), cpu, accum=3)
    assert on.thread_depth == 6 and "read 6 micro-batches ahead on a thread" in on.describe()
    off = loader_settings(DataSection(num_workers=0, prefetch_thread=False), cpu, accum=3)
    assert off.thread_depth == 0 and "on the training thread" in off.describe()
    assert loader_settings(DataSection(num_workers=2), cpu, accum=3).thread_depth == 0  # workers prefetch
    with pytest.raises(ConfigError, match="'data.prefetch_thread' = 'sometimes' does not match"):
        load_config("configs/tiny.yaml", ["data.prefetch_thread=sometimes"])


def test_auto_reads_ahead_on_cuda_only():
    assert use_thread("auto", "cuda") and not use_thread("auto", "cpu")  # on a CPU it slowed the step
    assert use_thread(True, "cpu") and not use_thread(False, "cuda")
    with pytest.raises(ConfigError, match="data.prefetch_thread must be true, false or 'auto', got 'yes'"):
        use_thread("yes", "cpu")
    assert loader_settings(DataSection(num_workers=0), torch.device("cpu"), accum=1).thread_depth == 0
    assert loader_settings(DataSection(num_workers=0), torch.device("cuda"), accum=1).thread_depth == 2


def test_a_loader_error_is_raised_where_the_batch_is_taken_after_the_good_batches():
    got = []
    with pytest.raises(DataError, match=r"sample 's\d': cannot decode image img\d.png"):
        for batch in _loader(Numbers(10, bad=7), True):
            got.append(batch["sample_ids"])
    want = []
    with pytest.raises(DataError):
        for batch in _loader(Numbers(10, bad=7), False):
            want.append(batch["sample_ids"])
    assert got == want and got  # the batches before the bad one, then the same error


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "deco-prefetch"]


def test_the_thread_stops_when_its_consumer_drops_the_iterator():
    before = len(_prefetch_threads())
    batches = iter(_loader(Numbers(10), True, steps=10**6))  # far more than the queue holds
    next(batches)
    assert len(_prefetch_threads()) == before + 1
    del batches
    gc.collect()
    deadline = time.monotonic() + 5
    while len(_prefetch_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_prefetch_threads()) == before


def test_training_with_and_without_the_thread_gives_the_same_losses(llava_data, tmp_path):
    train_file, images = llava_data
    losses = []
    for flag in ("true", "false"):
        out = tmp_path / flag
        run_training(load_config("configs/tiny.yaml", [
            f"data.train_file={train_file}", f"data.image_folder={images}", f"train.output_dir={out}",
            "train.max_steps=3", "train.quiet=true", "data.num_workers=0", f"data.prefetch_thread={flag}"]))
        losses.append([r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r])
    assert len(losses[0]) == 3 and losses[0] == losses[1]  # bit for bit
