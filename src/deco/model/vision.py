"""Vision towers: any encoder that declares its geometry, HF CLIP/SigLIP or one built in-process."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from deco.errors import ConfigError
from deco.hub import hub_kwargs, load_failure
from deco.model.processor import ImageTransform
from deco.pickles import pickle_policy
from deco.projectors.base import Grid

# CLIP's and SigLIP's published normalisation constants (their preprocessor_config.json files).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# arch -> (config class, model class, prefix tokens, mean, std, centre-crop)
_ARCHS: dict[str, tuple[type, type, int, tuple, tuple, bool]] = {
    "clip": (CLIPVisionConfig, CLIPVisionModel, 1, CLIP_MEAN, CLIP_STD, True),
    "siglip": (SiglipVisionConfig, SiglipVisionModel, 0, SIGLIP_MEAN, SIGLIP_STD, False),
}
_MODEL_TYPES = {"clip": "clip", "clip_vision_model": "clip", "siglip": "siglip", "siglip_vision_model": "siglip"}


class VisionTower(nn.Module):
    """Interface every encoder implements: pixels [B, 3, S, S] -> patch features [B, N, Dv].

    Geometry is declared, never guessed downstream: `hidden_size` (Dv), `image_size`,
    `patch_size`, `grid` (h, w), `num_prefix_tokens` (CLS/register tokens that are dropped),
    `feature_layer` (which hidden state is taken), `num_layers` (encoder depth, so hidden state
    indices run -(num_layers+1)..num_layers with entry 0 the embeddings), and the image `transform`.
    A tower implements `hidden_states` (the states up to a depth, prefix tokens included); `forward`
    and `forward_layers` select from one encoder pass that stops at the deepest layer they take.
    """

    hidden_size: int
    image_size: int
    patch_size: int
    num_prefix_tokens: int
    feature_layer: int
    num_layers: int

    @property
    def grid(self) -> Grid:
        """Patch grid (h, w) for the tower's image size."""
        side = self.image_size // self.patch_size
        return (side, side)

    @property
    def num_patches(self) -> int:
        """N = h * w patch tokens after prefix tokens are dropped."""
        return self.grid[0] * self.grid[1]

    def transform(self, pad_to_square: bool = True) -> ImageTransform:
        """The preprocessing that matches this encoder."""
        raise NotImplementedError

    def hidden_states(self, pixel_values: torch.Tensor, upto: int | None = None) -> Sequence[torch.Tensor]:
        """[B, 3, S, S] -> tensors [B, prefix + N, Dv]: the embeddings, then each layer's output, at least
        up to hidden state `upto` (an index 0..num_layers; None: every layer). A tower may stop there."""
        raise NotImplementedError

    def check_layer(self, layer: object, key: str = "vision.feature_layer") -> int:
        """Return `layer` if it indexes a hidden state of this encoder, else a ConfigError naming `key`."""
        n_states = self.num_layers + 1
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n_states <= layer < n_states:
            raise ConfigError(
                f"{key}={layer!r} is out of range for a {type(self).__name__} with {self.num_layers} "
                f"layers (hidden states: valid indices {-n_states}..{n_states - 1}, 0 = the embeddings)"
            )
        return layer

    def forward_layers(self, pixel_values: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """One encoder pass -> [B, N, Dv] patch features of each hidden state in `layers`, prefix tokens dropped.

        The pass stops at the deepest state taken: LLaVA's penultimate-layer features (feature_layer -2)
        never need the last layer, which a full forward computes and throws away (1/24 of CLIP-L/336).
        """
        n_states = self.num_layers + 1
        wanted = [layer % n_states for layer in layers]  # absolute indices, so any depth of output works
        states = self.hidden_states(pixel_values, upto=max(wanted))
        return [states[i][:, self.num_prefix_tokens :] for i in wanted]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, N, Dv] from the configured layer, prefix tokens dropped."""
        return self.forward_layers(pixel_values, [self.feature_layer])[0]

    def geometry(self) -> dict[str, Any]:
        """Geometry as a dict (logged and saved with models)."""
        return {
            "hidden_size": self.hidden_size,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "grid": list(self.grid),
            "num_prefix_tokens": self.num_prefix_tokens,
            "feature_layer": self.feature_layer,
            "num_layers": self.num_layers,
        }


class HFVisionTower(VisionTower):
    """Wraps an HF CLIP or SigLIP vision model; takes hidden_states[feature_layer], drops prefix tokens."""

    def __init__(
        self,
        model: PreTrainedModel,
        arch: str,
        feature_layer: int = -2,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ConfigError(f"vision.arch '{arch}' is not supported; valid: {', '.join(_ARCHS)}")
        self.model = model
        self.arch = arch
        cfg = model.config
        self.hidden_size = cfg.hidden_size
        self.image_size = cfg.image_size
        self.patch_size = cfg.patch_size
        _, _, self.num_prefix_tokens, default_mean, default_std, self._crop = _ARCHS[arch]
        self.mean = tuple(mean or default_mean)
        self.std = tuple(std or default_std)
        # hidden_states has num_hidden_layers + 1 entries (the embeddings first).
        self.num_layers = cfg.num_hidden_layers
        self.feature_layer = self.check_layer(feature_layer)
        if self.image_size % self.patch_size:
            raise ConfigError(f"vision image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    def transform(self, pad_to_square: bool = True) -> ImageTransform:
        return ImageTransform(self.image_size, self.mean, self.std, crop=self._crop, pad_to_square=pad_to_square)

    def hidden_states(self, pixel_values: torch.Tensor, upto: int | None = None) -> Sequence[torch.Tensor]:
        """HF's hidden_states [B, prefix + N, Dv] each; CLS is dropped later only where there is one.

        Below the last layer, HF's own modules run in HF's order (embeddings, CLIP's pre-layernorm, the
        encoder layers up to `upto`): the same states as HF's forward (tested), without the layers after.
        """
        dtype = next(self.model.parameters()).dtype
        pixel_values = pixel_values.to(dtype)
        parts = self._trunk()
        if upto is None or upto >= self.num_layers or parts is None:
            return self.model(pixel_values=pixel_values, output_hidden_states=True).hidden_states
        embeddings, pre_norm, layers = parts
        x = embeddings(pixel_values)
        if pre_norm is not None:
            x = pre_norm(x)
        states = [x]
        for layer in layers[:upto]:
            x = layer(x, None)  # image patches attend to every patch: no attention mask
            states.append(x)
        return states

    def _trunk(self) -> tuple[nn.Module, nn.Module | None, nn.ModuleList] | None:
        """(embeddings, pre-layernorm or None, encoder layers) of the HF model, None if laid out otherwise
        (then the full forward runs)."""
        root = getattr(self.model, "vision_model", self.model)  # transformers 4.x nests the transformer
        embeddings = getattr(root, "embeddings", None)
        layers = getattr(getattr(root, "encoder", None), "layers", None)
        if embeddings is None or not isinstance(layers, nn.ModuleList) or len(layers) != self.num_layers:
            return None
        return embeddings, getattr(root, "pre_layrnorm", None), layers

    def save(self, directory: str | Path) -> None:
        """HF save_pretrained (safetensors) plus the normalisation constants."""
        self.model.save_pretrained(str(directory))
        Path(directory, "deco_vision.json").write_text(
            json.dumps({"arch": self.arch, "mean": self.mean, "std": self.std}), encoding="utf-8"
        )


# Encoders built in-process (not HF models) that save themselves as safetensors + deco_vision.json
# with an "arch" key; each class has `save(directory)` and a classmethod `load(directory, ...)`.
CUSTOM_TOWERS: dict[str, str] = {
    "tiny-vit": "deco.model.tiny_vit:TinyViTTower",
}


def _custom_tower_class(pretrained: str) -> type | None:
    file = Path(pretrained) / "deco_vision.json"
    if not file.is_file():
        return None
    arch = json.loads(file.read_text(encoding="utf-8")).get("arch")
    if arch not in CUSTOM_TOWERS:
        return None
    import importlib

    module_name, class_name = CUSTOM_TOWERS[arch].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _read_preprocessor(path: Path) -> tuple[tuple | None, tuple | None]:
    """Mean/std from an HF preprocessor_config.json when the checkpoint ships one."""
    for name in ("deco_vision.json", "preprocessor_config.json"):
        file = path / name
        if file.is_file():
            data = json.loads(file.read_text(encoding="utf-8"))
            mean, std = data.get("mean", data.get("image_mean")), data.get("std", data.get("image_std"))
            if mean and std:
                return tuple(mean), tuple(std)
    return None, None


def load_vision_tower(
    pretrained: str | None,
    arch: str = "clip",
    hf_config: dict[str, Any] | None = None,
    feature_layer: int = -2,
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
) -> HFVisionTower:
    """Load an HF vision encoder by id/path (full CLIP/SigLIP checkpoints work too), or build one
    from `arch` + `hf_config` with random weights (tests, experiments)."""
    if pretrained is None:
        if arch not in _ARCHS:
            raise ConfigError(f"vision.arch '{arch}' is not supported; valid: {', '.join(_ARCHS)}")
        config_cls, model_cls = _ARCHS[arch][:2]
        try:
            model = model_cls(config_cls(**(hf_config or {})))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"vision.hf_config is invalid for {arch}: {exc}") from None
        return HFVisionTower(model.to(dtype), arch, feature_layer)
    custom = _custom_tower_class(pretrained)
    if custom is not None:
        return custom.load(pretrained, feature_layer=feature_layer, dtype=dtype)
    try:
        config = AutoConfig.from_pretrained(pretrained, **hub_kwargs(pretrained))
    except (OSError, ValueError) as exc:
        raise ConfigError(load_failure("a vision encoder config", pretrained, exc)) from None
    found = _MODEL_TYPES.get(config.model_type)
    if found is None:
        raise ConfigError(
            f"'{pretrained}' is a '{config.model_type}' checkpoint; deco's vision towers load "
            f"{', '.join(sorted(_MODEL_TYPES))}"
        )
    model_cls = _ARCHS[found][1]
    # An explicit config, so the folder's config.json cannot take use_safetensors for itself (deco.pickles).
    own_config = model_cls.config_class.from_pretrained(pretrained)
    with pickle_policy(allow_pickle):  # whatever the folder says, only the caller's decision unpickles
        model = model_cls.from_pretrained(pretrained, config=own_config, dtype=dtype,
                                          use_safetensors=None if allow_pickle else True)
    mean, std = _read_preprocessor(Path(pretrained)) if Path(pretrained).is_dir() else (None, None)
    return HFVisionTower(model, found, feature_layer, mean, std)
