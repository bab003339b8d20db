"""Pretrains the video demo's frame encoder: the image demo's per-patch targets plus the frame's clock.

Same tiny ViT, objective and schedule as `deco.demo.images.encoder` (colour, shape, size, row and column of
each patch), with one more per-patch target: the frame index, read from the background clock. Without
it the encoder is free to discard the background shade (nothing asks for it), and the clock would
not reach the projector. Frames are encoded one by one, as in the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from deco.demo.core.settings import EncoderSettings
from deco.demo.images.encoder import TARGETS, encoder_config, fit_patch_heads, patch_targets
from deco.demo.video.scenes import Video, render_frame
from deco.model.tiny_vit import TinyViTConfig, TinyViTTower


class FrameHeads(nn.Module):
    """One linear read-out per target (the image demo's five plus `time`) on normalised features."""

    def __init__(self, width: int, frames: int) -> None:
        super().__init__()
        self.sizes = {**TARGETS, "time": frames}
        self.norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in self.sizes.items()})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.norm(features)  # [B, N, D]
        return {k: head(h) for k, head in self.heads.items()}  # each [B, N, classes]


def encode_frames(picks: list[tuple[Video, int]], tower: TinyViTTower) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(video, frame) pairs -> pixels [N, 3, S, S] and per-patch targets [N, G*G] (time included)."""
    transform = tower.transform(pad_to_square=True)
    pixels = torch.stack([transform(Image.fromarray(render_frame(v, t))) for v, t in picks])
    per = []
    for v, t in picks:
        targets = patch_targets(v.frame(t), tower.patch_size)
        targets["time"] = np.full_like(targets["row"], t)
        per.append(targets)
    return pixels, {k: torch.from_numpy(np.stack([p[k] for p in per])).long() for k in per[0]}


def pretrain_frame_encoder(train: list[tuple[Video, int]], held_out: list[tuple[Video, int]], image_size: int,
                           frames: int, settings: EncoderSettings,
                           progress: Callable[[int, int], None] | None = None) -> tuple[TinyViTTower, dict[str, Any]]:
    """Train a TinyViT tower on per-patch targets of single frames, single-threaded; returns it frozen."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights on any machine (as the image demo's pretraining)
    try:
        torch.manual_seed(settings.seed)
        config = TinyViTConfig(image_size, settings.patch_size, settings.hidden_size, settings.num_layers,
                               settings.num_heads)
        tower = TinyViTTower(config, feature_layer=settings.feature_layer)
        heads = FrameHeads(config.hidden_size, frames)
        start = time.perf_counter()
        pixels, targets = encode_frames(train, tower)
        losses = fit_patch_heads(tower, heads, pixels, targets, [*TARGETS, "time"], settings, progress)
        return tower, {
            "steps": settings.pretrain_steps, "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "held_out_patch_accuracy": held_out_accuracy(tower, heads, held_out),
            "config": encoder_config(image_size, settings),
        }
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def held_out_accuracy(tower: TinyViTTower, heads: FrameHeads, picks: list[tuple[Video, int]]) -> dict[str, float]:
    """Per-patch accuracy of the pretraining heads on held-out frames; object targets on object patches."""
    heads.eval()
    pixels, targets = encode_frames(picks, tower)
    logits = heads(tower(pixels))
    on_object = targets["colour"] > 0
    out = {}
    for k, value in logits.items():
        right = value.argmax(-1) == targets[k]
        mask = on_object if k in ("colour", "shape", "size") else torch.ones_like(right)
        out[k] = round(float(right[mask].float().mean()), 4)
    return out
