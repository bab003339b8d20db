"""LoRA on the LLM for stage 2 (PEFT), optional QLoRA, merging for export, and adapter checkpoints.

The order in a stage-2 setup: build the model, load the stage-1 projector, `apply_stage` (which sets
requires_grad per component), then `apply_lora` (which freezes the LLM's base weights and leaves only
the adapters trainable in it), then build the optimizer. Checkpoints hold the adapters inside
trainable.safetensors (what a resume reads) and, for other tools, in PEFT's own format beside it
(`adapter_config.json` + `adapter_model.safetensors`, `save_run_adapter`; `final/` too, written before
the merge), so `PeftModel.from_pretrained(base_llm, "runs/x/checkpoint-N")` loads them. Their
`base_model_name_or_path` names the true base (run_base_llm: for an LLM built from a config, the run's
own `base_llm/`), so `AutoPeftModelForCausalLM.from_pretrained("runs/x/final")` needs nothing else; final/
says so in a README, and its merged llm/ is marked so the adapters are never loaded onto it twice. Before
`save_model` or an HF export, `merge_lora` folds the adapters into plain weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from deco.config import LoRASection
from deco.errors import ConfigError
from deco.model import DecoModel

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
BASE_LLM_DIR = "base_llm"  # a LoRA run's own base LLM, when it was built from a config (nothing to load it from)


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(
            "train.lora.enabled needs the 'peft' package: pip install 'deco-vlm[lora]' (or pip install peft)"
        ) from None
    return peft


def has_lora(model: DecoModel) -> bool:
    """True when the model's LLM is wrapped with (unmerged) PEFT adapters."""
    return hasattr(model.llm, "peft_config")


def require_qlora_support() -> None:
    """Raise a ConfigError unless bitsandbytes is installed and a CUDA GPU is visible."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "train.lora.quantize_4bit (QLoRA) needs the 'bitsandbytes' package (pip install bitsandbytes); "
            "set train.lora.quantize_4bit=false to train plain LoRA"
        ) from None
    if not torch.cuda.is_available():
        raise ConfigError(
            "train.lora.quantize_4bit (QLoRA) needs a CUDA GPU (bitsandbytes 4-bit kernels); none is visible. "
            "Set train.lora.quantize_4bit=false to train plain LoRA"
        )


def qlora_quantization_config(compute_dtype: torch.dtype = torch.bfloat16) -> Any:
    """The BitsAndBytesConfig QLoRA loads the LLM with (NF4, double quantisation), after checking support."""
    require_qlora_support()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def _linear_suffixes(llm: torch.nn.Module) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, m in llm.named_modules()
                   if isinstance(m, torch.nn.Linear) and "." in name})


def apply_lora(model: DecoModel, lora: LoRASection, gradient_checkpointing: bool = False) -> DecoModel:
    """Wrap `model.llm` with LoRA adapters on `lora.target_modules`; base LLM weights are frozen.

    Returns the model (changed in place). Other components keep their requires_grad.
    """
    peft = _peft()
    if has_lora(model):
        raise ConfigError("the model's LLM already has LoRA adapters")
    if lora.rank <= 0 or lora.alpha <= 0 or not 0 <= lora.dropout < 1:
        raise ConfigError(
            f"train.lora: rank and alpha must be positive and dropout in [0, 1); got rank={lora.rank}, "
            f"alpha={lora.alpha}, dropout={lora.dropout}"
        )
    present = _linear_suffixes(model.llm)
    missing = sorted(set(lora.target_modules) - set(present))
    if not lora.target_modules or missing:
        raise ConfigError(
            f"train.lora.target_modules {missing or lora.target_modules} match no linear layer of the LLM "
            f"({type(model.llm).__name__}); its linear layers are named: {', '.join(present)}"
        )
    if lora.quantize_4bit:
        require_qlora_support()
        if not getattr(model.llm, "is_loaded_in_4bit", False):
            raise ConfigError(
                "train.lora.quantize_4bit=true but the LLM was not loaded in 4 bit: it must be loaded from a "
                "checkpoint with quantization_config=deco.interop.lora.qlora_quantization_config()"
            )
        model.llm = peft.prepare_model_for_kbit_training(
            model.llm, use_gradient_checkpointing=gradient_checkpointing
        )
    config = peft.LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM",
    )
    model.llm = peft.get_peft_model(model.llm, config)
    trainable = sum(p.numel() for p in model.llm.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.llm.parameters())
    log.info("LoRA r=%d alpha=%d on %s: %s of %s LLM parameters trainable", lora.rank, lora.alpha,
             ",".join(lora.target_modules), f"{trainable:,}", f"{total:,}")
    return model


def merge_lora(model: DecoModel) -> DecoModel:
    """Fold the adapters into the LLM's weights and drop PEFT, so save_model / export write plain weights."""
    if not has_lora(model):
        return model
    if getattr(model.llm, "is_loaded_in_4bit", False):
        raise ConfigError(
            "cannot merge LoRA into a 4-bit LLM without losing precision: save the adapters with save_lora, "
            "load the model in 16/32 bit, apply_lora + load_lora, then merge_lora"
        )
    model.llm = model.llm.merge_and_unload()
    return model


def lora_state_dict(model: DecoModel) -> dict[str, torch.Tensor]:
    """The adapter weights only (PEFT key names, no adapter name), for checkpoints."""
    peft = _peft()
    if not has_lora(model):
        raise ConfigError("the model has no LoRA adapters to save")
    return {k: v.detach().contiguous().clone() for k, v in peft.get_peft_model_state_dict(model.llm).items()}


def lora_files(
    model: DecoModel, weights: dict[str, torch.Tensor] | None = None, base_model: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The adapter in PEFT's saved form: (weights by PEFT name, adapter_config.json contents).

    `weights` are gathered trainable tensors by DecoModel name (`llm.…`), for sharded runs whose model
    holds only shards; `base_model` is recorded as the LLM the adapter applies to.
    """
    if weights is None:
        state = lora_state_dict(model)
    else:
        llm_state = {k[len("llm."):]: v for k, v in weights.items() if k.startswith("llm.")}
        # save_embedding_layers=False: LoRA here never trains embeddings, and "auto" may query the hub.
        state = _peft().get_peft_model_state_dict(model.llm, state_dict=llm_state, save_embedding_layers=False)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    config = model.llm.peft_config["default"].to_dict()
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    if base_model is not None:
        config["base_model_name_or_path"] = base_model
    return state, config


def write_lora_files(files: tuple[dict[str, torch.Tensor], dict[str, Any]], directory: str | Path) -> Path:
    """Write what lora_files returned as adapter_model.safetensors + adapter_config.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state, config = files
    save_file(state, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
    return directory


def save_lora(model: DecoModel, directory: str | Path, base_model: str | None = None) -> Path:
    """Write adapter_model.safetensors + adapter_config.json (PEFT's format; PeftModel.from_pretrained reads it)."""
    return write_lora_files(lora_files(model, base_model=base_model), directory)


def run_base_llm(config: Any) -> str:
    """The LLM a training run's adapters apply to, as adapter_config.json's base_model_name_or_path: the
    stage-1 model's llm/ (model.load_from), llm.pretrained (a Hub id, or a folder made absolute), or, for an
    LLM built from its config, the run's own `base_llm/` folder (save_base_llm writes it before step 1)."""
    if config.model.load_from:
        return str(Path(config.model.load_from).resolve() / "llm")
    if config.llm.pretrained:
        local = Path(config.llm.pretrained)
        return str(local.resolve()) if local.exists() else config.llm.pretrained
    return str((Path(config.train.output_dir) / BASE_LLM_DIR).resolve())


def save_base_llm(model: DecoModel, config: Any) -> Path | None:
    """In a LoRA run whose LLM was built from its config (nowhere to load it from), write that LLM, before
    the adapters wrap it, to `train.output_dir/base_llm/` once; returns the folder, or None when the base
    is loadable from where it came (or the run has no LoRA)."""
    if not config.train.lora.enabled or config.model.load_from or config.llm.pretrained:
        return None
    if has_lora(model):
        raise ConfigError("save_base_llm needs the LLM before apply_lora")
    target = Path(config.train.output_dir) / BASE_LLM_DIR
    if not (target / "config.json").is_file():  # a resumed run keeps the folder its start wrote
        tmp = target.with_name(f".tmp-{BASE_LLM_DIR}")
        model.llm.save_pretrained(str(tmp))
        model.tokenizer.save_pretrained(str(tmp))
        tmp.replace(target)
    return target


def mark_merged(model: DecoModel, base: str) -> None:
    """Record in the (merged) LLM's config that LoRA adapters are folded into it, and their base; saved
    into llm/config.json, so loading those adapters onto it again is refused (load_lora)."""
    model.llm.config.deco_merged_lora = {"base_model_name_or_path": base}


def merged_readme(base: str) -> str:
    """The README.md of a LoRA run's final/: which LLM the adapters next to it apply to (not llm/)."""
    return (
        "# LoRA adapters of this run\n\n"
        "`llm/` holds the LLM with the adapters already merged in: load this folder with deco (or `llm/` alone) "
        "as it is.\n\n"
        "`adapter_model.safetensors` + `adapter_config.json` are the same adapters, unmerged. They apply to the "
        f"base LLM\n\n    {base}\n\n(adapter_config.json's `base_model_name_or_path`), e.g. "
        "`peft.AutoPeftModelForCausalLM.from_pretrained(\"<this folder>\")`. Never load them onto `llm/` here: "
        "that applies them twice and gives wrong outputs (deco's load_lora refuses it).\n"
    )


def save_run_adapter(
    model: DecoModel, directory: str | Path, config: Any, weights: dict[str, torch.Tensor] | None = None
) -> bool:
    """In a LoRA run, also write its adapters in PEFT's format into a checkpoint folder; False otherwise."""
    if not has_lora(model):
        return False
    write_lora_files(lora_files(model, weights, run_base_llm(config)), directory)
    return True


def load_lora(model: DecoModel, directory: str | Path) -> None:
    """Load adapter weights saved by save_lora into a model that apply_lora set up the same way."""
    peft = _peft()
    file = Path(directory) / ADAPTER_WEIGHTS
    if not has_lora(model):
        raise ConfigError(f"cannot load {file}: call apply_lora(model, config.train.lora) first")
    merged = getattr(model.llm.get_base_model().config, "deco_merged_lora", None)
    if merged:  # adapters folded into this LLM already: loading them again applies them twice
        raise ConfigError(
            f"cannot load {file}: this LLM already has LoRA adapters merged into it (its config.json says "
            f"deco_merged_lora); load them onto their base LLM, {merged.get('base_model_name_or_path')}, or use "
            "the merged model as it is"
        )
    if not file.is_file():
        raise ConfigError(f"LoRA adapter weights not found: {file}")
    state = load_file(str(file))
    expected = set(peft.get_peft_model_state_dict(model.llm))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    own = peft.get_peft_model_state_dict(model.llm)
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in sorted(expected & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ConfigError(
            f"{file} does not fit the model's LoRA setup (check train.lora rank/target_modules): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {wrong[:3]}"
        )
    peft.set_peft_model_state_dict(model.llm, state)
