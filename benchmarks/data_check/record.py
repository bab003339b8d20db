"""Measure `deco data check` throughput (images/s) against plain PIL decoding, on generated JPEGs.

python benchmarks/data_check/record.py [--images N] [--size PX] [--out FILE]

Writes N JPEG photos-like images (smooth colour fields plus noise, quality 90, PX x PX) and a
LLaVA-format JSON naming them, then times: (1) a bare single-process decode loop (PIL open + load +
RGB), the floor of what a check must do; (2) `check_data` with 1 worker; (3) with every core. The
check should run near (1) x cores: records are validated and files stat-ed besides decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from deco.data.check import check_data, default_workers


def write_images(root: Path, n: int, size: int) -> tuple[Path, Path]:
    """N JPEGs plus train.json; returns (json, image folder)."""
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    records = []
    for i in range(n):
        base = np.stack([np.sin(xx * (3 + i % 7)), np.cos(yy * (2 + i % 5)), xx * yy], axis=-1) * 100 + 120
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{i:06d}.jpg", quality=90)
        records.append({"id": str(i), "image": f"{i:06d}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "colours"}]})
    path = root / "train.json"
    path.write_text(json.dumps(records))
    return path, images


def bare_decode(images: Path) -> float:
    """Seconds to decode every file once in this process (no checks)."""
    started = time.perf_counter()
    for file in sorted(images.iterdir()):
        with Image.open(file) as im:
            im.convert("RGB")
    return time.perf_counter() - started


def main() -> None:
    """Generate, time, write the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=336)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data_check_cpu.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, images = write_images(Path(tmp), args.images, args.size)
        bare = bare_decode(images)
        runs = {}
        for workers in sorted({1, default_workers()}):
            started = time.perf_counter()
            report = check_data(data, images, workers=workers)
            wall = time.perf_counter() - started
            assert not report.bad, report.bad[:3]
            runs[str(workers)] = {"wall_s": round(wall, 3), "decode_s": round(report.decode_seconds, 3),
                                  "images_per_s": round(args.images / wall, 1)}
    record = {
        "what": f"deco data check on {args.images} JPEGs of {args.size}x{args.size} (quality 90)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "usable_cores": default_workers(), "processor": platform.processor()
                    or platform.machine(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "bare_decode_one_process": {"seconds": round(bare, 3), "images_per_s": round(args.images / bare, 1)},
        "check_by_workers": runs,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
