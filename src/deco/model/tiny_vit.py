"""A small ViT built in-process (the demo's encoder), behind the same VisionTower interface as HF ones.

Pre-norm transformer blocks on non-overlapping patches with a learnable position embedding and no
CLS token (`num_prefix_tokens` = 0), so every output token is a real patch. `hidden_states` follows
HF's convention: entry 0 is the patch embeddings, entry i the output of block i, so `feature_layer`
-1 is the last block and -2 the penultimate one (LLaVA's choice for CLIP).

Saved as `model.safetensors` + `deco_vision.json` (`"arch": "tiny-vit"`, the hyperparameters, mean
and std); `deco.model.vision.load_vision_tower` dispatches such a folder here, so a saved demo model
loads with the generic `deco.model.load_model`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deco.errors import ConfigError, ShapeError
from deco.model.processor import ImageTransform
from deco.model.vision import VisionTower

ARCH = "tiny-vit"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "deco_vision.json"


@dataclass
class TinyViTConfig:
    """Hyperparameters of the tiny ViT (saved in deco_vision.json)."""

    image_size: int = 48
    patch_size: int = 4
    hidden_size: int = 64
    num_layers: int = 3
    num_heads: int = 4
    mlp_ratio: int = 4
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def validate(self) -> None:
        """Raise ConfigError for sizes that cannot build a ViT."""
        for name in ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"tiny-vit '{name}' must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"tiny-vit image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"tiny-vit hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"tiny-vit mean/std must be 3 numbers (std > 0), got {self.mean} / {self.std}")


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width * mlp_ratio), nn.GELU(), nn.Linear(width * mlp_ratio, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]  # [B, N, D]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch embedding + position embedding + pre-norm blocks; returns every hidden state."""

    def __init__(self, config: TinyViTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        side = config.image_size // config.patch_size
        self.patch_embed = nn.Conv2d(3, config.hidden_size, config.patch_size, stride=config.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, config.hidden_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            Block(config.hidden_size, config.num_heads, config.mlp_ratio) for _ in range(config.num_layers)
        )

    def forward(self, pixels: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """[B, 3, S, S] -> hidden states [B, N, D]: the patch embeddings, then each block's output up to
        state `upto` (None: all num_layers + 1)."""
        size = self.config.image_size
        if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[2:] != (size, size):
            raise ShapeError(f"tiny-vit expects pixels [B, 3, {size}, {size}], got {tuple(pixels.shape)}")
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.pos_embed  # [B, N, D]
        states = [x]
        for block in self.blocks[:upto]:
            x = block(x)
            states.append(x)
        return states


class TinyViTTower(VisionTower):
    """VisionTower over a TinyViT: no prefix tokens, features from `hidden_states[feature_layer]`."""

    num_prefix_tokens = 0

    def __init__(self, config: TinyViTConfig, feature_layer: int = -1, model: TinyViT | None = None) -> None:
        super().__init__()
        self.model = model if model is not None else TinyViT(config)
        self.vit_config = config
        self.hidden_size = config.hidden_size
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        self.num_layers = config.num_layers
        self.feature_layer = self.check_layer(feature_layer)

    def transform(self, pad_to_square: bool = True) -> ImageTransform:
        """Resize straight to image_size (no crop), then normalise with the saved mean/std."""
        return ImageTransform(
            self.image_size, tuple(self.vit_config.mean), tuple(self.vit_config.std), crop=False,
            pad_to_square=pad_to_square,
        )

    def hidden_states(self, pixel_values: torch.Tensor, upto: int | None = None) -> Sequence[torch.Tensor]:
        """Hidden states [B, N, Dv] (no prefix tokens): the patch embeddings, then each block's output up
        to state `upto`."""
        return self.model(pixel_values.to(self.model.pos_embed.dtype), upto)

    def save(self, directory: str | Path) -> None:
        """Write model.safetensors and deco_vision.json (arch, hyperparameters, mean, std)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().clone() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        meta: dict[str, Any] = {"arch": ARCH, **asdict(self.vit_config)}
        meta["mean"], meta["std"] = list(self.vit_config.mean), list(self.vit_config.std)
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(
        cls, directory: str | Path, feature_layer: int = -1, dtype: torch.dtype = torch.float32
    ) -> TinyViTTower:
        """Rebuild from a folder written by `save`; weights must match the saved hyperparameters."""
        directory = Path(directory)
        meta_file = directory / META_FILE
        if not meta_file.is_file():
            raise ConfigError(f"'{directory}' is not a saved tiny-vit: {META_FILE} is missing")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.pop("arch", None) != ARCH:
            raise ConfigError(f"{meta_file}: arch is not '{ARCH}'")
        fields = set(TinyViTConfig.__dataclass_fields__)
        unknown = sorted(set(meta) - fields)
        if unknown:
            raise ConfigError(f"{meta_file}: unknown tiny-vit key '{unknown[0]}'; valid: {', '.join(sorted(fields))}")
        meta["mean"], meta["std"] = tuple(meta.get("mean", (0.5,) * 3)), tuple(meta.get("std", (0.25,) * 3))
        config = TinyViTConfig(**meta)
        tower = cls(config, feature_layer)
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise ConfigError(f"tiny-vit weights not found: {weights}")
        state = load_file(str(weights))
        try:
            tower.model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{weights} does not fit the tiny-vit in {meta_file}: {exc}") from None
        return tower.to(dtype)
