"""A toy LLaVA-format dataset (JSON + PNG images) for smoke runs, examples and tests.

`python -m deco.data.toy DIR [--images N] [--text N]` writes DIR/train.json and DIR/images/.
Captions vary in length, so micro-batches carry different numbers of loss tokens (which is what
makes loss normalisation across accumulation steps and processes observable).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image

WORDS = ["red", "green", "blue", "square", "circle", "left", "right", "top", "small", "big"]


def write_toy_dataset(root: str | Path, n_images: int = 12, n_text: int = 0, seed: int = 0) -> tuple[Path, Path]:
    """Write `train.json` and `images/*.png` under root; returns (json path, image folder)."""
    root = Path(root)
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


def main() -> None:
    """Command-line entry: write a toy dataset into a folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--text", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path, images = write_toy_dataset(args.root, args.images, args.text, args.seed)
    print(f"wrote {path} and {images}/")


if __name__ == "__main__":
    main()
