"""Stage -> what is trainable: stage 1 the projector, stage 2 projector + LLM; vision only if asked."""

from __future__ import annotations

import torch

from deco.config import TrainSection
from deco.model import DecoModel

COMPONENTS = ("vision_tower", "projector", "llm")


def trainable_components(train: TrainSection) -> set[str]:
    """The components a stage trains (LLaVA-1.5 recipe, arXiv 2310.03744)."""
    names = {"projector"} if train.stage == 1 else {"projector", "llm"}
    if train.train_vision:
        names.add("vision_tower")
    return names


def apply_stage(model: DecoModel, train: TrainSection) -> dict[str, tuple[int, int]]:
    """Set requires_grad per component for the stage; returns {component: (total, trainable)} counts.

    Every component is set explicitly (not only the trained ones), so a model loaded from a previous
    stage or with `vision.freeze=false` ends up exactly as the stage says.
    """
    train_these = trainable_components(train)
    for name in COMPONENTS:
        getattr(model, name).requires_grad_(name in train_these)
    return model.component_parameters()


def upcast_trainable(model: DecoModel) -> int:
    """Keep trainable parameters in float32 (master weights) when the model was built in bf16/fp16.

    A 2e-5 update to a bf16 weight is mostly rounded away, so trained tensors stay float32 and
    train.precision=bf16 runs the compute in bf16 through autocast; frozen parts keep model.dtype
    and their memory saving. (DeepSpeed casts the module to bf16 itself and keeps float32 copies
    in its optimizer.) Returns how many parameters were upcast.
    """
    count = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            count += param.numel()
    return count


def set_train_modes(model: DecoModel, train: TrainSection) -> None:
    """Projector and LLM in train mode in both stages; the vision tower only when it is trained.

    Gradients flow through the LLM even when it is frozen (stage 1 trains the projector through it),
    and HF models apply gradient checkpointing only in train mode. The vision tower sits before
    every trained part, so a frozen one runs in eval mode (no dropout, no checkpointing needed).
    """
    model.projector.train()
    model.llm.train()
    model.vision_tower.train("vision_tower" in trainable_components(train))


def describe_trainable(counts: dict[str, tuple[int, int]], stage: int) -> list[str]:
    """Log lines, one per component: total and trainable parameter counts."""
    lines = [f"stage {stage}: trainable parameters per component"]
    for name, (total, trainable) in counts.items():
        state = "trained" if trainable == total and total else ("frozen" if trainable == 0 else "partly trained")
        lines.append(f"  {name:<13} {total:>15,} total {trainable:>15,} trainable  ({state})")
    total = sum(c[0] for c in counts.values())
    trainable = sum(c[1] for c in counts.values())
    lines.append(f"  {'all':<13} {total:>15,} total {trainable:>15,} trainable")
    return lines
