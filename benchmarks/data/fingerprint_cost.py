"""What `data.fingerprint: content` costs at resume and start, against the default `stat`, at 10K images.

python benchmarks/data/fingerprint_cost.py [--images N] [--size PX] [--out FILE]

Writes N small JPEGs and a LLaVA-format JSON naming them, then times deco.train.rundir.fingerprint.data_fingerprint
(what every `deco train` start and `--resume` runs) with images compared by size + modification time
("stat") and by SHA-256 of their bytes ("content"), best of 3 (files in the page cache: a cold disk adds
its read time to "content"). Also records SHA-256 throughput on this machine, to extrapolate to larger
images: content costs about (total image bytes) / throughput on top of stat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from deco.data.records import load_records
from deco.train.report.runinfo import machine
from deco.train.rundir.fingerprint import data_fingerprint


def write_images(root: Path, n: int, size: int) -> tuple[Path, Path]:
    """N noisy JPEGs (about 1-2 KB at 32 px) plus train.json; returns (json, image folder)."""
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True)
    records = []
    for i in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i:06d}.jpg", quality=80)
        records.append({"id": str(i), "image": f"{i:06d}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "noise"}]})
    train = root / "train.json"
    train.write_text(json.dumps(records), encoding="utf-8")
    return train, images


def best_of(fn, repeats: int = 3) -> float:
    """Fastest of `repeats` timed calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def sha256_mb_per_s() -> float:
    """SHA-256 throughput over 256 MiB held in memory."""
    block = np.random.default_rng(1).integers(0, 256, 1 << 24, dtype=np.uint8).tobytes()
    seconds = best_of(lambda: [hashlib.sha256(block).digest() for _ in range(16)])
    return 16 * len(block) / seconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("fingerprint_cost.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        train, images = write_images(Path(tmp), args.images, args.size)
        records = load_records(train)
        total_bytes = sum(p.stat().st_size for p in images.iterdir())
        stat_s = best_of(lambda: data_fingerprint(train, records, images, "stat"))
        content_s = best_of(lambda: data_fingerprint(train, records, images, "content"))
    hash_rate = sha256_mb_per_s()
    result = {
        "what": "deco.train.rundir.fingerprint.data_fingerprint at each train start / --resume, best of 3, warm page cache",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "images": args.images,
        "image_px": args.size,
        "image_bytes_total": total_bytes,
        "stat_seconds": round(stat_s, 3),
        "content_seconds": round(content_s, 3),
        "content_extra_ms_per_image": round((content_s - stat_s) / args.images * 1e3, 4),
        "sha256_mb_per_s": round(hash_rate, 1),
        "note": "content adds about (total image bytes) / sha256_mb_per_s plus one open per image; e.g. "
                "LLaVA-665K's ~80 GB of images would add about 80e3 / sha256_mb_per_s seconds from a warm cache",
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
