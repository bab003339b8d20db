"""Pretrains the demo's tiny ViT in-process, then it is frozen and saved as a vision tower.

Objective: per-patch classification of what the scene puts there — colour, shape and size of the
object covering the patch (or background), and the row and column of the 3x3 cell the patch lies
in. Shape alone learns slowly from a few pixels; the position targets make the features carry where
each patch is, which the LM needs (linear probes then recover row, column and cell). The
heads are thrown away; only the encoder is kept.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deco.demo.core.settings import EncoderSettings
from deco.demo.images.scenes import COLOURS, SHAPES, SIZES, Scene, patch_owners, render
from deco.model.tiny_vit import TinyViTConfig, TinyViTTower

TARGETS = {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1, "size": len(SIZES) + 1, "row": 3, "col": 3}


def patch_targets(scene: Scene, patch_size: int) -> dict[str, np.ndarray]:
    """Per-patch class ids [G*G] for each target (0 = background for the object targets)."""
    owner = patch_owners(scene, patch_size).reshape(-1)  # [G*G], -1 = background
    g = scene.image_size // patch_size
    colours, sizes = list(COLOURS), list(SIZES)
    out = {}
    for name, pick in (("colour", lambda o: colours.index(o.colour)), ("shape", lambda o: SHAPES.index(o.shape)),
                       ("size", lambda o: sizes.index(o.size))):
        table = np.array([0] + [pick(o) + 1 for o in scene.objects])
        out[name] = table[owner + 1]
    rows, cols = np.divmod(np.arange(g * g), g)
    out["row"] = rows * 3 // g  # the 3x3 cell the patch centre lies in
    out["col"] = cols * 3 // g
    return out


def encode_scenes(scenes: list[Scene], tower: TinyViTTower) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pixels [N, 3, S, S] through the tower's own transform, and per-patch targets [N, G*G]."""
    transform = tower.transform(pad_to_square=True)
    pixels = torch.stack([transform(render(s)) for s in scenes])
    per = [patch_targets(s, tower.patch_size) for s in scenes]
    targets = {k: torch.from_numpy(np.stack([p[k] for p in per])).long() for k in TARGETS}
    return pixels, targets


class PatchHeads(nn.Module):
    """One linear read-out per target on normalised patch features."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in TARGETS.items()})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.norm(features)  # [B, N, D]
        return {k: head(h) for k, head in self.heads.items()}  # each [B, N, classes]


def pretrain_encoder(
    train_scenes: list[Scene],
    test_scenes: list[Scene],
    image_size: int,
    settings: EncoderSettings,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TinyViTTower, dict[str, Any]]:
    """Train a TinyViT tower on per-patch targets; returns it (frozen, eval mode) and a report.

    Runs single-threaded: the same weights on any machine, and no thread contention when the cores
    are busy (two threads on one small op spin more than they compute).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain(train_scenes, test_scenes, image_size, settings, progress)
    finally:
        torch.set_num_threads(threads)


def _pretrain(
    train_scenes: list[Scene],
    test_scenes: list[Scene],
    image_size: int,
    settings: EncoderSettings,
    progress: Callable[[int, int], None] | None,
) -> tuple[TinyViTTower, dict[str, Any]]:
    torch.manual_seed(settings.seed)
    config = TinyViTConfig(image_size, settings.patch_size, settings.hidden_size, settings.num_layers,
                           settings.num_heads)
    tower = TinyViTTower(config, feature_layer=settings.feature_layer)
    heads = PatchHeads(config.hidden_size)
    start = time.perf_counter()
    pixels, targets = encode_scenes(train_scenes, tower)
    losses = fit_patch_heads(tower, heads, pixels, targets, list(TARGETS), settings, progress)
    report = {
        "steps": settings.pretrain_steps,
        "seconds": round(time.perf_counter() - start, 1),
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "held_out_patch_accuracy": probe_accuracy(tower, heads, test_scenes),
        "config": encoder_config(image_size, settings),
    }
    return tower, report


def fit_patch_heads(
    tower: TinyViTTower,
    heads: nn.Module,
    pixels: torch.Tensor,
    targets: dict[str, torch.Tensor],
    keys: list[str],
    settings: EncoderSettings,
    progress: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Train tower + per-patch read-outs on random batches (AdamW, warm-up then cosine); leaves the
    tower frozen in eval mode and returns the loss of every step. Shared by the image and video demos.

    `keys` fixes the order the per-target losses are summed in (so results do not depend on dict order).
    """
    optimizer = torch.optim.AdamW(list(tower.parameters()) + list(heads.parameters()), lr=settings.lr,
                                  weight_decay=0.01)
    steps, warmup = settings.pretrain_steps, max(1, settings.pretrain_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    generator = torch.Generator().manual_seed(settings.seed)
    tower.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(len(pixels), (settings.batch_size,), generator=generator)
        logits = heads(tower(pixels[idx]))
        loss = sum(F.cross_entropy(logits[k].flatten(0, 1), targets[k][idx].flatten()) for k in keys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps)
    tower.eval().requires_grad_(False)
    return losses


def encoder_config(image_size: int, settings: EncoderSettings) -> dict[str, Any]:
    """The tower's shape as reports record it."""
    return {"image_size": image_size, "patch_size": settings.patch_size, "hidden_size": settings.hidden_size,
            "num_layers": settings.num_layers, "num_heads": settings.num_heads, "feature_layer": settings.feature_layer}


@torch.no_grad()
def probe_accuracy(tower: TinyViTTower, heads: PatchHeads, scenes: list[Scene]) -> dict[str, float]:
    """Held-out per-patch accuracy of the pretraining heads; object targets only on object patches."""
    heads.eval()
    pixels, targets = encode_scenes(scenes, tower)
    logits = heads(tower(pixels))
    on_object = targets["colour"] > 0
    out = {}
    for k in TARGETS:
        right = logits[k].argmax(-1) == targets[k]
        mask = on_object if k in ("colour", "shape", "size") else torch.ones_like(right)
        out[k] = round(float(right[mask].float().mean()), 4)
    return out


def save_encoder(tower: TinyViTTower, report: dict[str, Any], directory: str | Path) -> None:
    """Save the tower (loadable by deco.model.load_vision_tower) and its pretraining report."""
    tower.save(directory)
    Path(directory, "pretrain.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
