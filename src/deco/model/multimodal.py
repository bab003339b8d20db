"""The multimodal model: vision tower -> projector -> placeholder slots in the LLM's input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deco.config import check_layer_indices
from deco.errors import ConfigError, ShapeError
from deco.model.anyres import DEFAULT_LAYOUTS, AnyRes, check_layouts, token_grid_of
from deco.model.processor import Processor
from deco.model.vision import VisionTower
from deco.projectors.base import Projector


class DecoModel(nn.Module):
    """Vision tower + projector + causal LM. Image placeholder ids are replaced by projector outputs.

    Batch contract: `input_ids` [B, T] where every image appears as exactly M consecutive
    `image_token_id`s, and `pixel_values` [num_images, 3, S, S] holding those images in the order
    their placeholder blocks appear reading the batch row by row (text-only samples have none).

    Videos (projectors with `supports_time`, see projectors/video.py): `pixel_values` is
    [num_videos, F, 3, S, S]; each video's F frames are encoded one by one and reach the projector as
    [1, F*N, Dv] with grid (F, h, w); M (`num_image_tokens`) counts tokens per video of
    `num_frames` frames. High resolution (`enable_anyres`): `pixel_values` holds every image's views
    (global first, then tiles) [sum of views, 3, S, S] and `image_layouts` gives each image's
    (rows, cols); an image's block is its views' tokens in AnyRes order, with newline/separator
    text tokens between them (placed by the processor).

    Multi-level projectors (`wants_multi_level`, e.g. TokenPacker): with `multi_level_layers` the
    tower returns those hidden states in the same pass as the main layer and the projector gets them
    concatenated as `multi_level=[I, N, levels*Dv]`; without, it falls back on the main layer alone.
    """

    def __init__(
        self,
        vision_tower: VisionTower,
        projector: Projector,
        llm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        image_token_id: int,
        pad_to_square: bool = True,
        config: dict[str, Any] | None = None,
        multi_level_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if projector.vision_width != vision_tower.hidden_size:
            raise ShapeError(
                f"projector '{projector.name}' expects vision width {projector.vision_width} but the "
                f"vision tower outputs {vision_tower.hidden_size}"
            )
        llm_width = llm.get_input_embeddings().embedding_dim
        if projector.llm_width != llm_width:
            raise ShapeError(
                f"projector '{projector.name}' outputs width {projector.llm_width} but the LLM's "
                f"embeddings are {llm_width} wide"
            )
        self.vision_tower = vision_tower
        self.projector = projector
        self.llm = llm
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.pad_to_square = pad_to_square
        self.config = config or {}
        # Video projectors declare the frames per video; every visual input is then a video.
        self.num_frames: int | None = projector.num_frames if self.supports_time else None
        grid = vision_tower.grid if self.num_frames is None else (self.num_frames, *vision_tower.grid)
        # M for the tower's grid, known before anything runs (the data pipeline needs it).
        self.num_image_tokens = projector.num_tokens(grid)
        self.anyres: AnyRes | None = None
        # A training-free token reducer (deco.reducers.apply_reducer sets it and M to its budget).
        self.reducer: Any = None
        self.multi_level_layers = self._check_multi_level(multi_level_layers)

    def _check_multi_level(self, layers: Sequence[int] | None) -> list[int] | None:
        """The layers as a list, or a ConfigError naming 'vision.multi_level_layers' when they cannot be used."""
        if layers is None:
            return None
        key, name = "'vision.multi_level_layers'", self.projector.name
        if not self.projector.wants_multi_level:
            raise ConfigError(f"{key} = {list(layers)} is set but projector '{name}' reads one feature layer")
        if self.supports_time:
            raise ConfigError(f"{key}: multi-level features are for images; projector '{name}' takes videos")
        layers = list(layers)
        if len(layers) != self.projector.levels:
            raise ConfigError(
                f"{key} lists {len(layers)} layer(s) {layers} but projector '{name}' takes "
                f"levels={self.projector.levels}"
            )
        check_layer_indices(layers, self.vision_tower.num_layers, f"vision tower {type(self.vision_tower).__name__}")
        return layers

    @property
    def supports_time(self) -> bool:
        """Whether the projector takes videos (a time axis)."""
        return bool(getattr(self.projector, "supports_time", False))

    def processor(self) -> Processor:
        """The matching processor: the tower's image transform and M placeholders per image."""
        return Processor(
            self.tokenizer, self.vision_tower.transform(self.pad_to_square), self.num_image_tokens,
            num_frames=self.num_frames, min_frames=getattr(self.projector, "min_frames", 1), anyres=self.anyres,
        )

    def enable_anyres(
        self, layouts: Sequence[object] = DEFAULT_LAYOUTS, max_tiles: int = 4, layout_tokens: str = "newline"
    ) -> AnyRes:
        """Turn on LLaVA-NeXT-style high resolution (tiles + global view); `processor()` then uses it."""
        if self.num_frames is not None and self.num_frames > 1:
            raise ConfigError("anyres: high-resolution tiling is for images; this model takes videos")
        grid = self.vision_tower.grid
        self.anyres = AnyRes(
            self.vision_tower.transform(self.pad_to_square), self.num_image_tokens,
            token_grid_of(self.projector, grid), layouts, max_tiles, layout_tokens,
        )
        if isinstance(self.config.get("vision"), dict):
            # What save_model writes: a reloaded model turns AnyRes on with these same settings.
            self.config["vision"]["anyres"] = {
                "enabled": True, "layouts": [f"{r}x{c}" for r, c in self.anyres.layouts],
                "max_tiles": max_tiles, "layout_tokens": layout_tokens,
            }
        return self.anyres

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[I, 3, S, S] -> projector tokens [I, M, Dl] in the LLM's dtype; videos [V, F, 3, S, S] -> [V, M, Dl]."""
        grid: tuple[int, ...] = self.vision_tower.grid
        videos = pixel_values.dim() == 5
        if videos:
            if not self.supports_time:
                raise ShapeError(
                    f"pixel_values {tuple(pixel_values.shape)} holds videos but projector "
                    f"'{self.projector.name}' has no time axis (video projectors: deco3d, pllava, ...)"
                )
            n_videos, n_frames = pixel_values.shape[:2]
            if n_frames == 0:
                raise ShapeError(f"pixel_values {tuple(pixel_values.shape)}: the videos have zero frames")
            pixel_values = pixel_values.flatten(0, 1)  # [V*F, 3, S, S]: frames are encoded one by one
            grid = (n_frames, *grid)
        grad = any(p.requires_grad for p in self.vision_tower.parameters())
        if self.reducer is not None and not videos:
            tokens = self.reducer.encode(self, pixel_values)  # [I, K, Dl]
            return tokens.to(self.llm.get_input_embeddings().weight.dtype)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            features, multi_level = self.vision_features(pixel_values)  # [I, N, Dv], [I, N, L*Dv] or None
        if videos:
            features = features.reshape(n_videos, -1, features.shape[-1])  # [V, F*N, Dv], frame-major
        tokens = self.project(features, grid, multi_level)  # [I, M, Dl]
        return tokens.to(self.llm.get_input_embeddings().weight.dtype)

    def vision_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[I, 3, S, S] -> main-layer features [I, N, Dv] and, for a multi-level model, the
        `multi_level_layers` concatenated [I, N, levels*Dv] (else None); one encoder pass."""
        if self.multi_level_layers is None:
            return self.vision_tower(pixel_values), None
        layers = [self.vision_tower.feature_layer, *self.multi_level_layers]
        main, *levels = self.vision_tower.forward_layers(pixel_values, layers)
        return main, torch.cat(levels, dim=-1)

    def project(
        self, features: torch.Tensor, grid: tuple[int, ...], multi_level: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The projector on features from `vision_features`, in the projector's dtype: [I, M, Dl]."""
        proj_dtype = next(self.projector.parameters(), features).dtype
        if multi_level is None:
            return self.projector(features.to(proj_dtype), grid)
        return self.projector(features.to(proj_dtype), grid, multi_level=multi_level.to(proj_dtype))

    def _anyres_tokens(self, pixel_values: torch.Tensor, image_layouts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Every view through tower and projector, each image's views arranged: [sum of placeholders, Dl]."""
        if self.anyres is None:
            raise ConfigError("image_layouts were given but AnyRes is off; call model.enable_anyres() first")
        check_layouts(image_layouts, self.anyres, pixel_values.shape[0])  # type: ignore[arg-type]
        tokens = self.encode_images(pixel_values)  # [views, M, Dl]
        out, start = [], 0
        for layout in image_layouts:
            n = self.anyres.num_views(tuple(layout))  # type: ignore[arg-type]
            out.append(self.anyres.arrange(tokens[start : start + n], tuple(layout)))  # type: ignore[arg-type]
            start += n
        return torch.cat(out)

    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_layouts: Sequence[Sequence[int]] | None = None,
    ) -> torch.Tensor:
        """Token embeddings with image placeholder slots filled by projector outputs: [B, T, Dl]."""
        is_image = input_ids == self.image_token_id  # [B, T]
        if self.reducer is not None:
            self.reducer.prepare_llm(is_image)  # an LLM-stage reducer (FastV) needs the image positions
        safe_ids = input_ids.masked_fill(is_image, 0)  # placeholder ids may lie outside the vocab
        embeds = self.llm.get_input_embeddings()(safe_ids)
        n_slots = int(is_image.sum())
        if pixel_values is None or pixel_values.shape[0] == 0:
            if n_slots:
                raise ShapeError(f"the batch has {n_slots} image placeholder tokens but no pixel_values")
            return embeds
        if image_layouts is not None:
            flat = self._anyres_tokens(pixel_values, image_layouts)  # [P, Dl]
            if n_slots != flat.shape[0]:
                raise ShapeError(
                    f"the batch has {n_slots} image placeholder tokens but the {len(image_layouts)} AnyRes "
                    f"image(s) ({pixel_values.shape[0]} views) give {flat.shape[0]} image features"
                )
            return embeds.masked_scatter(is_image.unsqueeze(-1), flat)
        image_tokens = self.encode_images(pixel_values)  # [I, M, Dl]
        n_features = image_tokens.shape[0] * image_tokens.shape[1]
        if n_slots != n_features:
            kind = "video" if pixel_values.dim() == 5 else "image"
            raise ShapeError(
                f"the batch has {n_slots} image placeholder tokens but the {image_tokens.shape[0]} "
                f"{kind}(s) give {n_features} image features ({image_tokens.shape[1]} each)"
            )
        flat = image_tokens.reshape(-1, image_tokens.shape[-1])
        # masked_scatter fills slots in row-major order, matching the pixel_values order contract.
        return embeds.masked_scatter(is_image.unsqueeze(-1), flat)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        image_layouts: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """LLM forward on the merged embeddings; returns the HF CausalLMOutput (loss if labels)."""
        inputs_embeds = self.embed(input_ids, pixel_values, image_layouts)
        return self.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_layouts: Sequence[Sequence[int]] | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """HF generation (KV cache) from the merged embeddings; returns only the new token ids.

        Expects left padding for batches (the Processor pads that way).
        """
        inputs_embeds = self.embed(input_ids, pixel_values, image_layouts)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        generate_kwargs.setdefault("eos_token_id", self.tokenizer.eos_token_id)
        return self.llm.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs)

    def component_parameters(self) -> dict[str, tuple[int, int]]:
        """{component: (total, trainable)} parameter counts, for logging what is frozen."""
        out = {}
        for name in ("vision_tower", "projector", "llm"):
            params = list(getattr(self, name).parameters())
            out[name] = (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
        return out
