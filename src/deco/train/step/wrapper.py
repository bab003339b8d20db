"""The module accelerate wraps for training: DecoModel's forward returning logits, where every batch
uses every trainable parameter."""

from __future__ import annotations

import torch
from torch import nn

from deco.model import DecoModel

PREFIX = "deco."  # parameter names inside TrainingModel are "deco." + the DecoModel name


class TrainingModel(nn.Module):
    """Wraps a DecoModel; forward(input_ids, attention_mask, pixel_values, image_layouts) -> logits [B, T, V].

    A batch with no image (text-only samples) still runs the vision tower and projector, on one blank
    image whose output is added with weight 0. Without it the projector would be missing from the
    graph on that process: stage-1 backward fails outright, DDP waits for gradients that never come,
    and ZeRO-3 / FSDP processes disagree on which parameters to gather and hang (a known LLaVA
    problem with text-only data).
    """

    def __init__(self, model: DecoModel) -> None:
        super().__init__()
        self.deco = model
        # FSDP's transformer auto-wrap (accelerate) reads this: the LLM's and the vision encoder's
        # layer classes, those present in this model.
        present = {type(m).__name__ for m in model.modules()}
        vision = getattr(model.vision_tower, "model", None)
        names = [*(getattr(model.llm, "_no_split_modules", None) or []),
                 *(getattr(vision, "_no_split_modules", None) or [])]
        self._no_split_modules = [n for n in dict.fromkeys(names) if n in present]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None, image_layouts: list[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Logits of the LLM on the merged embeddings (`image_layouts`: AnyRes (rows, cols) per image)."""
        model = self.deco
        embeds = model.embed(input_ids, pixel_values, image_layouts)  # [B, T, Dl]
        if pixel_values is None or pixel_values.numel() == 0:
            side = model.vision_tower.image_size
            blank = torch.zeros(1, 3, side, side, device=embeds.device)
            embeds = embeds + 0.0 * model.encode_images(blank).sum()
        return model.llm(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).logits
