"""Worker batches on a CPU: small tensors travel by value, large ones (and dtypes NumPy lacks) through
shared memory; the training process gets the same batches either way."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from deco.config import DataSection
from deco.train.loading.batches import BatchPlan
from deco.train.loading.loader import build_loader, loader_settings
from deco.train.loading.wire import BY_VALUE_MAX_BYTES, ByValue, ReceivedBatches, SendSmallByValue

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class Samples(Dataset):
    """Sample i: token ids, a big float image, a bf16 tensor, and its id."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"ids": torch.arange(i, i + 5), "image": torch.randn(3, 300, 300, generator=g),
                "half": torch.full((4,), float(i), dtype=torch.bfloat16), "sample_id": f"s{i}"}


def collate(samples: list[dict]) -> dict:
    return {"ids": torch.stack([s["ids"] for s in samples]), "image": torch.stack([s["image"] for s in samples]),
            "half": torch.stack([s["half"] for s in samples]), "sample_ids": [s["sample_id"] for s in samples]}


def test_small_tensors_are_sent_by_value_and_large_or_bf16_ones_are_not():
    batch = SendSmallByValue(collate)([Samples()[i] for i in range(2)])
    assert isinstance(batch["ids"], ByValue)
    assert isinstance(batch["image"], torch.Tensor) and batch["image"].numel() * 4 > BY_VALUE_MAX_BYTES
    assert isinstance(batch["half"], torch.Tensor)  # NumPy has no bfloat16
    assert batch["sample_ids"] == ["s0", "s1"]


def test_worker_batches_equal_in_process_batches():
    plan = BatchPlan(8, 4, 2, 1, seed=1)
    cpu = torch.device("cpu")
    got = {}
    for workers in (0, 1):
        settings = loader_settings(DataSection(num_workers=workers, prefetch_thread=False), cpu, plan.accum)
        assert settings.small_by_value == (workers > 0)
        loader = build_loader(Samples(), plan, 0, 0, 0, 3, collate, settings, seed=1)
        assert isinstance(loader, ReceivedBatches) == (workers > 0)
        got[workers] = list(loader)
    assert len(got[0]) == len(got[1]) == 6
    for a, b in zip(got[0], got[1], strict=True):
        assert a["sample_ids"] == b["sample_ids"]
        for key in ("ids", "image", "half"):
            assert isinstance(b[key], torch.Tensor) and b[key].dtype == a[key].dtype
            assert torch.equal(a[key], b[key])


def test_on_cuda_every_tensor_goes_through_shared_memory_to_be_pinned():
    assert not loader_settings(DataSection(num_workers=2), torch.device("cuda"), 1).small_by_value
