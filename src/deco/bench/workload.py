"""The measured setup: one vision tower and one LLM shared by a DecoModel per (projector, tokens).

Sharing the towers keeps memory at one LLM however many projectors are compared, and makes the
comparison exact: only the projector (and so the visual token count) differs between variants.
Training steps are deco train's own (bench/trainstep.py); one AdamW per stage covers every variant
(params without a gradient are skipped by the update), so the LLM's optimizer state exists once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deco.bench.sizes import SizeSpec
from deco.bench.timing import now
from deco.bench.trainstep import Recipe, TrainRig
from deco.config import TrainSection
from deco.errors import ConfigError, DecoError
from deco.model import DecoModel, load_vision_tower
from deco.model.llm import DTYPES, fit_embeddings, load_llm, resolve_tokenizer
from deco.model.processor import Processor
from deco.model.tokenizer import ensure_image_token
from deco.model.vision import VisionTower
from deco.projectors import build_projector
from deco.projectors.catalog import token_options
from deco.train.step.freeze import trainable_components


def stage_components(stage: int) -> set[str]:
    """Which components a stage trains: the trainer's own rule (vision tower frozen)."""
    return trainable_components(TrainSection(stage=stage))

CAPTION = "a small red circle above a large blue square next to a green triangle on a white background. "


def trainable_parameters(model: DecoModel, stage: int) -> int:
    """Parameters a stage trains, counted from the components (vision tower always frozen)."""
    return sum(p.numel() for name in stage_components(stage) for p in getattr(model, name).parameters())


def set_stage(model: DecoModel, stage: int | None) -> None:
    """requires_grad and train/eval mode per component for a stage (None: everything frozen, eval)."""
    for name in ("vision_tower", "projector", "llm"):
        trained = stage is not None and name in stage_components(stage)
        module = getattr(model, name)
        module.requires_grad_(trained)
        module.train(trained)


@dataclass
class Variant:
    """One measured configuration: a projector at a token budget, with its batches."""

    key: str
    projector: str
    options: dict[str, Any]
    model: DecoModel
    train_batch: dict[str, torch.Tensor] = field(default_factory=dict)
    prompt_batch: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Visual tokens per image into the LLM."""
        return self.model.num_image_tokens


def variant_plan(
    projectors: list[str],
    tokens: list[int],
    grid: tuple[int, int],
    size_options: dict[str, dict[str, Any]] | None = None,
) -> list[tuple[str, str, dict]]:
    """(key, projector, options) for each projector at each token budget it can take.

    Projectors whose token count follows from the grid (linear, mlp, pixel_shuffle) appear once;
    the others once per requested budget (catalog's mapping of tokens to options), on top of the
    size's own options for that projector.
    """
    plan: list[tuple[str, str, dict]] = []
    for name in projectors:
        budgets: list[int | None] = list(tokens) or [None]
        seen: set[str] = set()
        for budget in budgets:
            options = {**(size_options or {}).get(name, {}), **token_options(name, budget)}
            with torch.device("meta"):
                proj = build_projector(name, 8, 8, options)
            try:
                proj.check_grid(grid)
            except DecoError as exc:
                raise ConfigError(f"{name} at {budget} tokens does not fit the {grid[0]}x{grid[1]} grid: {exc}") from None
            m = proj.num_tokens(grid)
            key = f"{name}@{m}"
            if key not in seen:
                seen.add(key)
                plan.append((key, name, options))
    return plan


def _text_ids(tokenizer: Any, n: int) -> list[int]:
    ids = tokenizer(CAPTION * (1 + n // 16), add_special_tokens=False).input_ids
    if len(ids) < n:
        raise ConfigError(f"cannot make {n} caption tokens with this tokenizer")
    return ids[:n]


class Workbench:
    """Builds the shared towers and the variants, and runs one measured step of each kind."""

    def __init__(
        self,
        spec: SizeSpec,
        device: str,
        dtype: str,
        vision: str | None = None,
        llm: str | None = None,
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        torch.manual_seed(seed)
        # Random-weight towers are built straight on the device: initialising a 7B-shaped LLM on the
        # host and copying it over would cost minutes of a GPU lease.
        with torch.device(self.device) if vision is None else contextlib.nullcontext():
            self.tower: VisionTower = load_vision_tower(vision, spec.vision_arch, spec.vision_config, -2, self.dtype)
        with torch.device(self.device) if llm is None else contextlib.nullcontext():
            self.llm = load_llm(llm, spec.llm_arch, spec.llm_config, self.dtype, "sdpa")
        self.tokenizer = resolve_tokenizer(None if llm else spec.tokenizer, llm)
        self.image_token_id = ensure_image_token(self.tokenizer)
        fit_embeddings(self.llm, self.tokenizer)
        self.tower.requires_grad_(False)
        self.tower.to(self.device)
        self.llm.to(self.device)
        self.variants: dict[str, Variant] = {}
        size = self.tower.image_size
        g = torch.Generator().manual_seed(seed)
        self.pixels = torch.randn(spec.batch_size, 3, size, size, generator=g).to(self.device, self.dtype)
        self.features = torch.randn(
            spec.batch_size, self.tower.num_patches, self.tower.hidden_size, generator=g
        ).to(self.device)
        self.rig: TrainRig | None = None
        # (variant key, stage) -> fraction of each timed step spent waiting for the data loader
        self.data_wait: dict[tuple[str, int], list[float]] = {}

    @property
    def dl(self) -> int:
        """LLM width."""
        return self.llm.get_input_embeddings().embedding_dim

    def add_variant(self, key: str, projector: str, options: dict[str, Any]) -> Variant:
        """Build the projector, wrap it with the shared towers, lay out its batches."""
        proj = build_projector(projector, self.tower.hidden_size, self.dl, options)
        proj.to(self.device, torch.float32 if proj.keeps_fp32 else self.dtype)
        model = DecoModel(self.tower, proj, self.llm, self.tokenizer, self.image_token_id)
        variant = Variant(key, projector, dict(options), model)
        variant.train_batch = self._train_batch(model)
        variant.prompt_batch = self._prompt_batch(model)
        self.variants[key] = variant
        return variant

    def _expand(self, model: DecoModel, ids: list[int]) -> list[int]:
        return Processor(self.tokenizer, self.tower.transform(), model.num_image_tokens).expand_image_tokens(ids)

    def _train_batch(self, model: DecoModel) -> dict[str, torch.Tensor]:
        # LLaVA "plain" stage-1 sample: <image>, caption, EOS; loss on the caption and EOS only.
        prefix = self._expand(model, self.tokenizer("<image>\n").input_ids)
        caption = _text_ids(self.tokenizer, self.spec.train_text_tokens) + [self.tokenizer.eos_token_id]
        ids = torch.tensor([prefix + caption] * self.spec.batch_size, device=self.device)
        labels = ids.clone()
        labels[:, : len(prefix)] = -100
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": self.pixels,
                "labels": labels}

    def prompt_batch(self, model: DecoModel) -> dict[str, torch.Tensor]:
        """The bench's prompt batch laid out for `model`'s placeholder count (a reduced model's too)."""
        return self._prompt_batch(model)

    def _prompt_batch(self, model: DecoModel) -> dict[str, torch.Tensor]:
        ids = self._expand(model, self.tokenizer("<image>" + self.spec.prompt).input_ids)
        ids_t = torch.tensor([ids] * self.spec.batch_size, device=self.device)
        return {"input_ids": ids_t, "attention_mask": torch.ones_like(ids_t), "pixel_values": self.pixels}

    def start_training(self, recipe: Recipe, folder: Path) -> TrainRig:
        """Set up deco train's step for every variant (call after the last add_variant)."""
        caption = self.tokenizer.decode(_text_ids(self.tokenizer, self.spec.train_text_tokens))
        self.rig = TrainRig(self, recipe, folder, caption)
        return self.rig

    def train_step(self, variant: Variant, stage: int) -> float:
        """One optimizer step of deco train's loop for `variant` (start_stage(stage) first); returns seconds."""
        if self.rig is None or self.rig.stage != stage:
            raise DecoError(f"internal: training stage {stage} was not started (start_training, then start_stage)")
        seconds, waited = self.rig.step(variant)
        self.data_wait.setdefault((variant.key, stage), []).append(waited / seconds if seconds else 0.0)
        return seconds

    def projector_step(self, variant: Variant) -> float:
        """Projector alone: forward + backward on vision features [B, N, Dv]; returns seconds."""
        proj = variant.model.projector
        proj.train()
        proj.requires_grad_(True)
        features = self.features.to(next(proj.parameters()).dtype)
        t0 = now(self.device)
        out = proj(features, self.tower.grid)  # [B, M, Dl]
        out.float().sum().backward()
        elapsed = now(self.device) - t0
        proj.zero_grad(set_to_none=True)
        return elapsed

    def weight_bytes(self, variant: Variant) -> int:
        """Bytes of every parameter the variant's model holds."""
        return sum(p.numel() * p.element_size() for p in variant.model.parameters())

    def optimizer_state_bytes(self, variant: Variant, stage: int) -> int:
        """AdamW keeps two moments per trained parameter, in the parameter's dtype."""
        return 2 * sum(p.numel() * p.element_size() for name in stage_components(stage)
                       for p in getattr(variant.model, name).parameters())
