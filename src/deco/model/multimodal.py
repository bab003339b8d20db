"""The multimodal model: vision tower -> projector -> placeholder slots in the LLM's input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deco.errors import ShapeError
from deco.model.processor import Processor
from deco.model.vision import VisionTower
from deco.projectors.base import Projector


class DecoModel(nn.Module):
    """Vision tower + projector + causal LM. Image placeholder ids are replaced by projector outputs.

    Batch contract: `input_ids` [B, T] where every image appears as exactly M consecutive
    `image_token_id`s, and `pixel_values` [num_images, 3, S, S] holding those images in the order
    their placeholder blocks appear reading the batch row by row (text-only samples have none).
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
        # M for the tower's grid, known before anything runs (the data pipeline needs it).
        self.num_image_tokens = projector.num_tokens(vision_tower.grid)

    def processor(self) -> Processor:
        """The matching processor: the tower's image transform and M placeholders per image."""
        return Processor(self.tokenizer, self.vision_tower.transform(self.pad_to_square), self.num_image_tokens)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[I, 3, S, S] -> projector tokens [I, M, Dl] in the LLM's dtype."""
        grad = any(p.requires_grad for p in self.vision_tower.parameters())
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            features = self.vision_tower(pixel_values)  # [I, N, Dv]
        proj_dtype = next(self.projector.parameters(), features).dtype
        tokens = self.projector(features.to(proj_dtype), self.vision_tower.grid)  # [I, M, Dl]
        return tokens.to(self.llm.get_input_embeddings().weight.dtype)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with image placeholder slots filled by projector outputs: [B, T, Dl]."""
        is_image = input_ids == self.image_token_id  # [B, T]
        safe_ids = input_ids.masked_fill(is_image, 0)  # placeholder ids may lie outside the vocab
        embeds = self.llm.get_input_embeddings()(safe_ids)
        n_slots = int(is_image.sum())
        if pixel_values is None or pixel_values.numel() == 0:
            if n_slots:
                raise ShapeError(f"the batch has {n_slots} image placeholder tokens but no pixel_values")
            return embeds
        image_tokens = self.encode_images(pixel_values)  # [I, M, Dl]
        n_features = image_tokens.shape[0] * image_tokens.shape[1]
        if n_slots != n_features:
            raise ShapeError(
                f"the batch has {n_slots} image placeholder tokens but the {image_tokens.shape[0]} "
                f"image(s) give {n_features} image features ({image_tokens.shape[1]} each)"
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
        **kwargs: Any,
    ) -> Any:
        """LLM forward on the merged embeddings; returns the HF CausalLMOutput (loss if labels)."""
        inputs_embeds = self.embed(input_ids, pixel_values)
        return self.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """HF generation (KV cache) from the merged embeddings; returns only the new token ids.

        Expects left padding for batches (the Processor pads that way).
        """
        inputs_embeds = self.embed(input_ids, pixel_values)
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
