"""Build a DecoModel from a Config; save and load our own models (safetensors + JSON, no pickle)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deco.config import (
    AnyResSection,
    Config,
    LLMSection,
    ModelSection,
    ProjectorSection,
    VisionSection,
    check_anyres_section,
    check_layer_indices,
    dataclass_from_dict,
    resolve_multi_level_layers,
)
from deco.errors import ConfigError
from deco.model.llm import DTYPES, fit_embeddings, load_llm, resolve_tokenizer
from deco.model.multimodal import DecoModel
from deco.model.tokenizer import ensure_image_token
from deco.model.vision import VisionTower, load_vision_tower
from deco.pickles import pickle_policy
from deco.projectors.registry import build_projector, get_options_class, make_projector_config

MODEL_FORMAT = "deco-model"
FORMAT_VERSION = 1
CONFIG_FILE = "deco_model.json"
PROJECTOR_FILE = "projector.safetensors"


def build_model(config: Config, vision_tower: VisionTower | None = None) -> DecoModel:
    """Vision tower, projector and LLM as the config says (or a saved model via model.load_from).

    `vision_tower` lets callers pass an encoder built in-process (the demo's) instead of HF's.
    """
    if config.model.load_from:
        return load_model(config.model.load_from, allow_pickle=config.model.allow_pickle)
    # Every weight file read below goes through the caller's pickle decision (deco.pickles), whatever the
    # folders' own config.json files say.
    with pickle_policy(config.model.allow_pickle):
        return _build(config, vision_tower)


def _build(config: Config, vision_tower: VisionTower | None) -> DecoModel:
    dtype = DTYPES[config.model.dtype]
    if vision_tower is None:
        v = config.vision
        vision_tower = load_vision_tower(
            v.pretrained, v.arch, v.hf_config, v.feature_layer, dtype, config.model.allow_pickle
        )
    quantization = None
    if config.train.lora.enabled and config.train.lora.quantize_4bit:
        from deco.interop.lora import qlora_quantization_config  # checks bitsandbytes + CUDA first

        quantization = qlora_quantization_config(torch.bfloat16 if dtype == torch.float32 else dtype)
    llm = load_llm(
        config.llm.pretrained,
        config.llm.arch,
        config.llm.hf_config,
        dtype,
        config.llm.attn_implementation,
        config.model.allow_pickle,
        quantization,
    )
    tokenizer = resolve_tokenizer(config.llm.tokenizer, config.llm.pretrained)
    image_token_id = ensure_image_token(tokenizer)
    fit_embeddings(llm, tokenizer)
    projector = build_projector(
        config.projector.name, vision_tower.hidden_size, llm.get_input_embeddings().embedding_dim,
        config.projector.options,
    )
    projector.to(torch.float32 if projector.keeps_fp32 else dtype)
    if config.vision.freeze:
        vision_tower.requires_grad_(False)
    multi_level_layers = resolve_multi_level_layers(config)
    if multi_level_layers is not None:  # checked here too for towers loaded by path or passed in
        check_layer_indices(multi_level_layers, vision_tower.num_layers, f"vision tower {type(vision_tower).__name__}",
                            defaulted=config.vision.multi_level_layers is None)
    sections = _model_sections(config)
    sections["vision"]["multi_level_layers"] = multi_level_layers  # saved resolved, so a reload reads the same
    model = DecoModel(
        vision_tower, projector, llm, tokenizer, image_token_id, config.vision.pad_to_square,
        config=sections, multi_level_layers=multi_level_layers,
    )
    if config.vision.anyres.enabled:
        enable_anyres_from(model, config.vision.anyres)
    return model


def enable_anyres_from(model: DecoModel, section: AnyResSection) -> None:
    """Turn AnyRes on as `vision.anyres` says; errors name the config key at fault."""
    try:
        model.enable_anyres(check_anyres_section(section), section.max_tiles, section.layout_tokens)
    except ConfigError as exc:
        key = "layout_tokens" if "layout_tokens" in str(exc) else "enabled"
        raise ConfigError(f"'vision.anyres.{key}': {exc}") from None


def _model_sections(config: Config) -> dict[str, Any]:
    return {name: dataclasses.asdict(getattr(config, name)) for name in ("model", "vision", "projector", "llm")}


def save_model(model: DecoModel, directory: str | Path) -> Path:
    """Write vision/ and llm/ (HF save_pretrained), projector.safetensors and deco_model.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not hasattr(model.vision_tower, "save"):
        raise ConfigError(f"vision tower {type(model.vision_tower).__name__} cannot be saved (no save method)")
    model.vision_tower.save(directory / "vision")
    model.llm.save_pretrained(str(directory / "llm"))
    model.tokenizer.save_pretrained(str(directory / "llm"))
    save_file(_contiguous(model.projector.state_dict()), str(directory / PROJECTOR_FILE))
    meta = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "sections": model.config,
        "vision_tower_class": type(model.vision_tower).__name__,
        "geometry": model.vision_tower.geometry(),
        "num_image_tokens": model.num_image_tokens,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return directory


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; clone makes each tensor its own.
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def read_model_meta(directory: str | Path) -> dict[str, Any]:
    """The deco_model.json of a saved model, with a clear error when the folder is not one."""
    file = Path(directory) / CONFIG_FILE
    if not file.is_file():
        raise ConfigError(f"'{directory}' is not a saved deco model: {CONFIG_FILE} is missing")
    meta = json.loads(file.read_text(encoding="utf-8"))
    if meta.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{file}: format is {meta.get('format')!r}, expected {MODEL_FORMAT!r}")
    return meta


def load_model(directory: str | Path, vision_tower: VisionTower | None = None, allow_pickle: bool = False) -> DecoModel:
    """Load a model written by save_model, or the final model of a `deco train` run folder (its final/, as the
    commands take it); the round trip is exact.

    Pickle weights inside the folder load only with `allow_pickle=True`, the caller's decision: a
    `model.allow_pickle` written in the folder's own deco_model.json is ignored (a downloaded folder
    must not be able to turn unpickling on for itself).
    """
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file() and (directory / "final" / CONFIG_FILE).is_file():
        directory = directory / "final"  # a run folder
    meta = read_model_meta(directory)
    sections = meta["sections"]
    source = str(directory / CONFIG_FILE)
    config = Config(
        model=dataclass_from_dict(ModelSection, sections["model"], source, "model."),
        vision=dataclass_from_dict(VisionSection, sections["vision"], source, "vision."),
        projector=dataclass_from_dict(ProjectorSection, sections["projector"], source, "projector."),
        llm=dataclass_from_dict(LLMSection, sections["llm"], source, "llm."),
    )
    config.model.load_from = None
    config.model.allow_pickle = allow_pickle
    if "multi_level_layers" not in sections["vision"] and get_options_class(config.projector.name).multi_level:
        # Saved before multi-level features existed: such a projector saw the main layer `levels` times.
        levels = getattr(make_projector_config(config.projector.name, config.projector.options), "levels", 1)
        config.vision.multi_level_layers = [config.vision.feature_layer] * levels
    if vision_tower is None:
        # HF towers and registered in-process towers (vision.CUSTOM_TOWERS) both load from vision/.
        config.vision.pretrained = str(directory / "vision")
    config.llm.pretrained = str(directory / "llm")
    config.llm.tokenizer = str(directory / "llm")
    model = build_model(config, vision_tower)
    load_projector_weights(model.projector, directory / PROJECTOR_FILE)
    return model


def load_projector_weights(projector: nn.Module, path: str | Path) -> None:
    """Load projector weights from safetensors, naming missing, unexpected and mis-shaped tensors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"projector weights not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ConfigError(f"{path}: not a readable safetensors file ({exc})") from None
    own = projector.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:5]}")
        name = getattr(projector, "name", type(projector).__name__)
        raise ConfigError(f"{path} does not fit projector '{name}': " + "; ".join(parts))
    projector.load_state_dict(state, strict=True)
