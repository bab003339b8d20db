"""Shared fixtures: a tiny LLaVA-format dataset (JSON + PNG images) written into tmp_path."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image

WORDS = ["red", "green", "blue", "square", "circle", "left", "right", "top", "small", "big"]


def write_llava_dataset(root: Path, n_images: int = 12, n_text: int = 0, seed: int = 0) -> tuple[Path, Path]:
    """Write `train.json` and `images/*.png` under root; captions of varied length (so micro-batches
    carry different numbers of loss tokens). Returns (json path, image folder)."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n_images):
        colour = tuple(rng.randrange(256) for _ in range(3))
        Image.new("RGB", (40 + 3 * i, 48 - i % 4), colour).save(images / f"img{i}.png")
        caption = " ".join(rng.choice(WORDS) for _ in range(1 + i % 6))
        records.append({"id": f"img-{i}", "image": f"img{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": caption}]})
    for i in range(n_text):
        answer = " ".join(rng.choice(WORDS) for _ in range(2 + i % 4))
        records.append({"id": f"txt-{i}", "conversations": [
            {"from": "human", "value": "Say words."}, {"from": "gpt", "value": answer}]})
    rng.shuffle(records)
    path = root / "train.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path, images


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
