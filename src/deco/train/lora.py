"""LoRA on the LLM for stage 2 (train.lora): PEFT adapters trained instead of the full LLM, merged into
the LLM when the final model is saved (so `final/` is a plain model that load_model reads)."""

from __future__ import annotations

from deco.config import LoRASection, TrainSection
from deco.errors import ConfigError
from deco.model import DecoModel


def lora_active(train: TrainSection) -> bool:
    """LoRA applies to stage 2 only (stage 1 does not train the LLM)."""
    return train.lora.enabled and train.stage == 2


def add_lora(model: DecoModel, lora: LoRASection) -> None:
    """Wrap model.llm with PEFT LoRA adapters on `lora.target_modules`."""
    if lora.quantize_4bit:
        raise ConfigError("train.lora.quantize_4bit (QLoRA) is not supported by deco.train")
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("train.lora.enabled needs the `peft` package: pip install peft") from None
    present = {name.rsplit(".", 1)[-1] for name, _ in model.llm.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if missing:
        raise ConfigError(f"train.lora.target_modules {missing} are not modules of the LLM")
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")
    model.llm = get_peft_model(model.llm, config)


def freeze_for_lora(model: DecoModel) -> None:
    """Within the LLM only the adapters train."""
    for name, param in model.llm.named_parameters():
        param.requires_grad_("lora_" in name)


def merge_lora(model: DecoModel) -> None:
    """Fold the adapters into the LLM's weights and drop the PEFT wrapper."""
    if hasattr(model.llm, "merge_and_unload"):
        model.llm = model.llm.merge_and_unload()
