"""`deco train` on video data: a projector with a time axis makes the trainer read each `image` as a video."""

from __future__ import annotations

import json

import numpy as np

from deco.config import load_config
from deco.model import load_model
from deco.train import run_training


def test_deco3d_trains_on_npy_videos_through_deco_train(tmp_path, torch_one_thread):
    rng = np.random.default_rng(0)
    (tmp_path / "videos").mkdir()
    records = []
    for i in range(6):
        np.save(tmp_path / "videos" / f"v{i}.npy", rng.integers(0, 256, (5, 48, 48, 3), dtype=np.uint8))
        records.append({"id": f"v{i}", "image": f"v{i}.npy", "conversations": [
            {"from": "human", "value": "<image>\nWhat moves?"}, {"from": "gpt", "value": "a red circle"}]})
    (tmp_path / "train.json").write_text(json.dumps(records))
    config = load_config("configs/tiny.yaml", [
        "projector.name=deco3d", "projector.options={target: 2x3x3, num_frames: 4}",
        f"data.train_file={tmp_path / 'train.json'}", f"data.image_folder={tmp_path / 'videos'}",
        f"train.output_dir={tmp_path / 'run'}", "train.max_steps=2", "train.quiet=true",
    ])
    summary = run_training(config)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses)), summary
    model = load_model(tmp_path / "run" / "final")
    assert model.num_frames == 4 and model.num_image_tokens == 2 * 3 * 3
