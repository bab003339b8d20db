"""The bench's training steps are `deco train`'s: `Loop.next_step`, fed by deco train's DataLoader.

Nothing here computes a step. It builds what the training loop needs from the bench's shared towers:
synthetic JPEG image-caption samples in LLaVA format (decoded and resized by the real dataset and
collator), deco train's accelerator (precision, accumulation), freezing, float32 master weights,
gradient checkpointing, AdamW implementation and clipping, all from one TrainSection per stage.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deco.bench.timing import now
from deco.config import DataSection, TrainSection
from deco.data import ConversationDataset, DataCollator
from deco.train.loading.batches import BatchPlan
from deco.train.loading.loader import LoaderSettings, build_loader, loader_settings
from deco.train.report.progress import Reporter
from deco.train.rundir.state import TrainState
from deco.train.setup import enable_checkpointing
from deco.train.step.accel import make_accelerator
from deco.train.step.compiled import compile_parts
from deco.train.step.freeze import apply_stage, set_train_modes, upcast_trainable
from deco.train.step.loop import Loop
from deco.train.step.optim import adamw, optimizer_kind, param_groups
from deco.train.step.wrapper import TrainingModel

# LLaVA-1.5 learning rates (haotian-liu/LLaVA scripts/v1_5); the values only matter in that the update really runs.
STAGE_LR = {1: 1e-3, 2: 2e-5}
# Samples on disk: enough for several distinct global batches; the plan cycles through epochs.
MIN_SAMPLES = 32


@dataclass
class Recipe:
    """The training settings the bench times (deco train's keys; `deco bench` prints them)."""

    precision: str = "fp32"
    accum: int = 1
    # LLaVA-1.5 checkpoints activations in stage 2 only.
    gradient_checkpointing_stage2: bool = False
    optimizer: str = "auto"
    num_workers: int | str = "auto"
    max_grad_norm: float = 1.0
    compile: bool = False

    def section(self, stage: int, batch: int) -> TrainSection:
        """deco train's TrainSection for a stage at this per-device batch."""
        return TrainSection(
            stage=stage, per_device_batch_size=batch, global_batch_size=batch * self.accum, lr=STAGE_LR[stage],
            precision=self.precision, max_grad_norm=self.max_grad_norm, optimizer=self.optimizer,
            gradient_checkpointing=self.gradient_checkpointing_stage2 and stage == 2, compile=self.compile,
            save_every=0, quiet=True,
        )


def write_samples(folder: Path, n: int, side: int, caption: str, seed: int) -> Path:
    """n LLaVA-format image-caption samples with JPEGs of `side` px (smooth random pictures)."""
    from PIL import Image

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        small = Image.frombytes("RGB", (8, 8), bytes(rng.randrange(256) for _ in range(8 * 8 * 3)))
        small.resize((side, side), Image.BICUBIC).save(folder / f"{i}.jpg", quality=90)
        records.append({"id": f"s{i}", "image": f"{i}.jpg", "conversations": [
            {"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": caption}]})
    path = folder / "train.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


class TrainRig:
    """Per variant, a Loop over its own loader; one accelerator and one AdamW per stage for all variants."""

    def __init__(self, wb: Any, recipe: Recipe, folder: Path, caption: str, seed: int = 0) -> None:
        self.wb, self.recipe, self.seed = wb, recipe, seed
        self.batch = wb.spec.batch_size
        side = 2 * wb.tower.image_size  # LLaVA's images are ~2x the tower's side: decode + resize is real work
        n = max(MIN_SAMPLES, 2 * self.batch * recipe.accum)
        self.train_file = write_samples(folder, n, side, caption, seed)
        self.accelerator = make_accelerator(recipe.section(1, self.batch), recipe.accum)
        self.loading: LoaderSettings = loader_settings(DataSection(num_workers=recipe.num_workers),
                                                       self.accelerator.device, recipe.accum)
        self.models: dict[str, Any] = {}
        self.batches: dict[str, Iterator[dict[str, Any]]] = {}
        self.datasets: dict[str, ConversationDataset] = {}
        self.loops: dict[str, Loop] = {}
        self.stage: int | None = None
        self.optimizer: Any = None
        if recipe.compile:
            for v in wb.variants.values():
                compile_parts(v.model)

    def _dataset(self, variant: Any) -> ConversationDataset:
        if variant.key not in self.datasets:
            self.datasets[variant.key] = ConversationDataset(
                self.train_file, self.train_file.parent, variant.model.processor(), "plain", 1 << 20)
        return self.datasets[variant.key]

    def _loader(self, variant: Any, steps: int) -> Any:
        data = self._dataset(variant)
        plan = BatchPlan(len(data), self.batch * self.recipe.accum, self.batch, 1, self.seed)
        return build_loader(data, plan, 0, 0, 0, steps, DataCollator.from_processor(variant.model.processor()),
                            self.loading, self.seed)

    def start_stage(self, stage: int, steps: int) -> None:
        """Freeze, upcast and checkpoint as deco train does for `stage`; one AdamW over every variant."""
        train = self.recipe.section(stage, self.batch)
        variants = list(self.wb.variants.values())
        groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for v in variants:
            apply_stage(v.model, train)
            upcast_trainable(v.model)  # float32 master weights of what this stage trains
            for g in param_groups(v.model, train):  # the shared LLM's groups once
                params = [p for p in g["params"] if id(p) not in seen]
                seen.update(id(p) for p in params)
                if params:
                    groups.append({**g, "params": params})
        if train.gradient_checkpointing:
            enable_checkpointing(self.wb.llm)
        self.optimizer = self.accelerator.prepare_optimizer(adamw(groups, train.lr, train.optimizer))
        for p in seen_params(groups):  # allocate AdamW state now: a zero gradient leaves weights unchanged
            p.grad = torch.zeros_like(p)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        plan = BatchPlan(MIN_SAMPLES, self.batch * self.recipe.accum, self.batch, 1, self.seed)
        for v in variants:
            if v.key not in self.models:
                self.models[v.key] = self.accelerator.prepare_model(TrainingModel(v.model))
            if v.key not in self.batches:
                self.batches[v.key] = iter(self._loader(v, 10**6))
            self.loops[v.key] = Loop(self.accelerator, self.models[v.key], self.optimizer, None, plan,
                                     self.batches[v.key], TrainState(), train, steps, Reporter(False, True),
                                     None, save=lambda: None)
        self.stage = stage

    def step(self, variant: Any) -> tuple[float, float]:
        """One optimizer step of `variant` in the current stage: (seconds, seconds waiting for data)."""
        loop = self.loops[variant.key]
        apply_stage(variant.model, loop.train)
        set_train_modes(variant.model, loop.train)
        t0 = now(self.wb.device)
        result = loop.next_step()
        return now(self.wb.device) - t0, result.data_seconds

    def loader_rate(self, variant: Any, micro_batches: int) -> float:
        """Samples/s of the data loader alone (same dataset, collator and workers; no model)."""
        loader = iter(self._loader(variant, max(1, micro_batches // self.recipe.accum)))
        first = next(loader)  # worker start-up is paid once per run, not per step
        start, n = now("cpu"), 0
        for batch in loader:
            n += len(batch["sample_ids"])
        return (n / (now("cpu") - start)) if n else len(first["sample_ids"]) / 1e-9

    def describe(self) -> dict[str, Any]:
        """The settings the timed steps used."""
        r = self.recipe
        return {
            "code": "deco.train.step.loop.Loop.next_step (the step deco train runs), fed by deco train's DataLoader",
            "precision": r.precision,
            "per_device_batch": self.batch,
            "accumulation": r.accum,
            "max_grad_norm": r.max_grad_norm,
            "gradient_checkpointing": {"stage1": False, "stage2": r.gradient_checkpointing_stage2},
            "optimizer": f"AdamW {optimizer_kind(self.optimizer) if self.optimizer else r.optimizer} "
                         f"(stage 1 lr {STAGE_LR[1]}: projector; stage 2 lr {STAGE_LR[2]}: projector + LLM), "
                         "float32 master weights of trained parts",
            "data_loader": self.loading.describe(),
            "compile": r.compile,
            "samples": "synthetic JPEGs at 2x the tower's side, LLaVA 'plain' template, decoded per step",
        }


def seen_params(groups: list[dict[str, Any]]) -> list[torch.Tensor]:
    """Every parameter of the optimizer's groups."""
    return [p for g in groups for p in g["params"]]
