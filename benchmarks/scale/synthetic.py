"""LLaVA-665K-shaped synthetic training data: one JSON list (no newlines, as `json.dump` writes it by
default), ~80% image records with 1-5 question/answer turns, text lengths near LLaVA-1.5's mix
(~1.5 KB per record, so 665K records are ~1 GB). Images: a small pool of real JPEG files that the
records reuse (the loader's cost per image does not depend on how many distinct files there are).

    python benchmarks/scale/synthetic.py OUT_DIR --records 665000
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image

WORDS = ("the", "a", "an", "of", "in", "on", "with", "left", "right", "red", "blue", "green", "small", "large",
         "person", "car", "dog", "cat", "table", "street", "sign", "window", "building", "sky", "tree", "water",
         "people", "white", "black", "holding", "wearing", "standing", "sitting", "near", "background",
         "foreground", "color", "shape", "number", "two", "three", "what", "where", "which", "how", "many", "is",
         "are", "does")
IMAGE_POOL = 256


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def record(i: int, rng: random.Random) -> dict:
    """One record: image (80%) or text-only, 1-5 turns, answers of 10-120 words."""
    turns = []
    for _ in range(rng.randint(1, 5)):
        question = _text(rng, 5, 25) + "?"
        turns.append({"from": "human", "value": question})
        turns.append({"from": "gpt", "value": _text(rng, 10, 120) + "."})
    out: dict = {"id": f"{i:09d}"}
    if rng.random() < 0.8:
        out["image"] = f"img/{rng.randrange(IMAGE_POOL):04d}.jpg"
        first = turns[0]["value"]
        turns[0]["value"] = f"<image>\n{first}" if rng.random() < 0.5 else f"{first}\n<image>"
    out["conversations"] = turns
    return out


def write_images(folder: Path, seed: int = 0) -> None:
    """IMAGE_POOL small JPEGs of random sizes (64-640 px a side) under folder/img/."""
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for k in range(IMAGE_POOL):
        path = folder / "img" / f"{k:04d}.jpg"
        if not path.exists():
            size = (rng.randint(64, 640), rng.randint(64, 640))
            Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3))).save(path, quality=85)


def write_data(path: Path, records: int, seed: int = 0, indent: int | None = None) -> Path:
    """`records` synthetic records as one JSON list at `path` (indent None: a single line)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        # Streamed: 665K records as one json.dump would hold them all in memory twice.
        f.write("[")
        for i in range(records):
            if i:
                f.write(",\n" if indent is not None else ", ")
            f.write(json.dumps(record(i, rng), indent=indent))
        f.write("]")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--records", type=int, default=665_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_images(args.out)
    target = write_data(args.out / f"synthetic-{args.records}.json", args.records, args.seed)
    print(f"{target}: {args.records} records, {target.stat().st_size / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
