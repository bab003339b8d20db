"""Shared fixtures: a tiny LLaVA-format dataset (JSON + PNG images) written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from deco.data.toy import write_toy_dataset

# The library's toy dataset writer, under the name the tests use.
write_llava_dataset = write_toy_dataset


@pytest.fixture
def llava_data(tmp_path: Path) -> tuple[Path, Path]:
    """12 image-caption samples: (train.json, image folder)."""
    return write_llava_dataset(tmp_path / "data")


@pytest.fixture
def torch_one_thread():
    """Run torch on one thread: tiny models run faster so (no thread hand-offs, and no spinning when the
    machine is busy), and subprocesses given OMP_NUM_THREADS=1 compute bit-identical results."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
