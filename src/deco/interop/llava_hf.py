"""HF `LlavaForConditionalGeneration` checkpoints in and out (the llava-hf/llava-1.5-7b-hf layout).

The correspondence (transformers' models/llava, modeling_llava.py): HF LLaVA takes `hidden_states[vision_feature_layer]` of a CLIP or SigLIP
vision model, drops the CLS token with strategy "default" (CLIP; SigLIP has none and uses "full"),
maps it with `multi_modal_projector` (linear_1, act, linear_2) and writes the features into the slots
of `image_token_index`, checking their count. That is deco's `HFVisionTower` + `mlp` projector +
causal LM, so import and export move modules across without touching a number.

Loading goes through `LlavaForConditionalGeneration.from_pretrained`, which reads both the 4.x
weight names of Hub checkpoints and the 5.x ones; missing or mis-shaped tensors are errors here,
not random initialisation.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, LlavaConfig, LlavaForConditionalGeneration, PreTrainedModel

from deco.errors import ConfigError, ShapeError
from deco.hub import hub_kwargs, load_failure
from deco.interop.chat_template import jinja_chat_template
from deco.interop.checkpoint import (
    read_hf_config,
    require_model_type,
    require_tokenizer_files,
    weight_files,
)
from deco.model import DecoModel, HFVisionTower
from deco.model.llm import DTYPES, fit_embeddings
from deco.model.tokenizer import load_tokenizer
from deco.pickles import pickle_policy
from deco.projectors import build_projector

log = logging.getLogger(__name__)

# deco vision arch -> (HF vision model_type, HF feature-select strategy, extra tokens before patches)
_VISION = {"clip": ("clip_vision_model", "default", 1), "siglip": ("siglip_vision_model", "full", 0)}
_ARCH_OF = {model_type: arch for arch, (model_type, _, _) in _VISION.items()}
_MLP_ACTS = ("gelu", "silu", "relu")  # deco's mlp activations, all in HF's ACT2FN under these names
_IDENTITY_ACTS = ("linear", "identity")


# ----------------------------------------------------------------------------------------- import


def read_image_processor(path: str | Path) -> dict[str, Any]:
    """Image-processor settings of a saved HF processor (preprocessor_config.json or 5.x processor_config.json)."""
    path = Path(path)
    for name, key in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        file = path / name
        if file.is_file():
            data = json.loads(file.read_text(encoding="utf-8"))
            data = data.get(key, {}) if key else data
            if data:
                return data
    return {}


def _check_llava_config(path: Path, config: LlavaConfig) -> str:
    """The deco vision arch for this checkpoint, or a ConfigError naming what deco cannot express."""
    vision_type = config.vision_config.model_type
    arch = _ARCH_OF.get(vision_type)
    if arch is None:
        raise ConfigError(
            f"'{path}': vision_config is a '{vision_type}' model; deco imports LLaVA checkpoints with "
            f"{' or '.join(_ARCH_OF)} vision towers"
        )
    if not isinstance(config.vision_feature_layer, int):
        raise ConfigError(
            f"'{path}': vision_feature_layer={config.vision_feature_layer} concatenates several layers; "
            "deco's vision towers take one layer"
        )
    strategy = _VISION[arch][1]
    if config.vision_feature_select_strategy != strategy:
        raise ConfigError(
            f"'{path}': vision_feature_select_strategy='{config.vision_feature_select_strategy}' with a "
            f"{arch} tower; deco drops exactly the CLS token where there is one, which is strategy '{strategy}'"
        )
    act = config.projector_hidden_act
    if act not in _MLP_ACTS + _IDENTITY_ACTS:
        raise ConfigError(
            f"'{path}': projector_hidden_act='{act}' has no deco projector; supported: "
            f"{', '.join(_MLP_ACTS + _IDENTITY_ACTS)}"
        )
    return arch


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """HF prints its own load report; deco raises its own error, so keep HF's quiet meanwhile."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _load_hf_llava(path: Path, dtype: torch.dtype, allow_pickle: bool) -> LlavaForConditionalGeneration:
    with pickle_policy(allow_pickle), _quiet_transformers():  # outermost: its refusal is the line shown
        try:
            hf, info = LlavaForConditionalGeneration.from_pretrained(
                str(path),
                dtype=dtype,
                use_safetensors=None if allow_pickle else True,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # so the mismatches come back as a list we can name
                **hub_kwargs(path),
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(load_failure("the LLaVA checkpoint", path, exc)) from None
    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        lines = [f"{k}: checkpoint {tuple(a)} vs config {tuple(b)}" for k, a, b in mismatched[:6]]
        raise ShapeError(
            f"'{path}': {len(mismatched)} tensor(s) do not have the shape config.json implies: " + "; ".join(lines)
        )
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ConfigError(f"'{path}': {len(missing)} tensor(s) missing from the checkpoint: {', '.join(missing[:6])}")
    if info.get("unexpected_keys"):
        log.warning("%s: ignored %d unexpected tensors, e.g. %s", path, len(info["unexpected_keys"]),
                    sorted(info["unexpected_keys"])[:3])
    return hf


def _causal_lm_from(hf: LlavaForConditionalGeneration) -> PreTrainedModel:
    """The LLaVA's language model + lm_head as a stand-alone HF causal LM (modules moved, not copied)."""
    decoder = hf.model.language_model
    with torch.device("meta"):  # no memory for weights that are replaced right away
        llm = AutoModelForCausalLM.from_config(decoder.config)
    setattr(llm, llm.base_model_prefix, decoder)
    llm.set_output_embeddings(hf.get_output_embeddings())
    llm.config = decoder.config
    llm.generation_config = hf.generation_config
    leftovers = [n for n, t in [*llm.named_parameters(), *llm.named_buffers()] if t.is_meta]
    if leftovers:
        raise ConfigError(f"cannot split the LLaVA language model into a causal LM: {leftovers[:3]} are unset")
    return llm


def _projector_from(hf: LlavaForConditionalGeneration, dtype: torch.dtype) -> nn.Module:
    """deco `mlp` (or `linear`, for an identity activation) holding the LLaVA projector's weights."""
    config = hf.config
    source = hf.model.multi_modal_projector
    dv, dl = config.vision_config.hidden_size, config.text_config.hidden_size
    w1, w2 = source.linear_1.weight.detach(), source.linear_2.weight.detach()
    b1 = source.linear_1.bias.detach() if source.linear_1.bias is not None else torch.zeros(dl, dtype=w1.dtype)
    b2 = source.linear_2.bias.detach() if source.linear_2.bias is not None else torch.zeros(dl, dtype=w2.dtype)
    if config.projector_hidden_act in _IDENTITY_ACTS:
        # linear_2(linear_1(x)) is one linear map; exact when linear_2 is the identity (deco's export).
        projector = build_projector("linear", dv, dl, {})
        weight = (w2.double() @ w1.double()).to(w1.dtype)
        bias = (w2.double() @ b1.double() + b2.double()).to(w1.dtype)
        state = {"linear.weight": weight, "linear.bias": bias}
    else:
        projector = build_projector("mlp", dv, dl, {"depth": 2, "activation": config.projector_hidden_act})
        state = {"mlp.0.weight": w1, "mlp.0.bias": b1, "mlp.2.weight": w2, "mlp.2.bias": b2}
    projector.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
    return projector.to(dtype)


def _checkpoint_dtype(config: dict[str, Any]) -> str:
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return name if name in DTYPES else "float32"


def import_llava_hf(path: str | Path, dtype: str | None = None, allow_pickle: bool = False) -> DecoModel:
    """Build a DecoModel (HF vision tower + `mlp` projector + causal LM) from an HF LLaVA checkpoint folder.

    Takes the tokenizer, its chat template, and the image settings (mean/std, padding to square)
    from the folder's processor files. `dtype` defaults to the checkpoint's own.
    """
    path = Path(path)
    raw = read_hf_config(path)
    require_model_type(path, raw, ["llava"], "an HF LlavaForConditionalGeneration checkpoint")
    weight_files(path, allow_pickle)  # refuses pickle-only folders before anything is loaded
    require_tokenizer_files(path)
    dtype = dtype or _checkpoint_dtype(raw)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not supported; valid: {', '.join(DTYPES)}")
    try:
        config = LlavaConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"'{path}/config.json' is not a valid LLaVA config: {exc}") from None
    arch = _check_llava_config(path, config)

    hf = _load_hf_llava(path, DTYPES[dtype], allow_pickle)
    image_settings = read_image_processor(path)
    mean, std = image_settings.get("image_mean"), image_settings.get("image_std")
    tower = HFVisionTower(hf.model.vision_tower, arch, config.vision_feature_layer, mean, std)
    tower.requires_grad_(False)
    _check_image_size(path, tower, image_settings)
    llm = _causal_lm_from(hf)
    projector = _projector_from(hf, DTYPES[dtype])
    tokenizer = load_tokenizer(path)
    if not tokenizer.chat_template:
        tokenizer.chat_template = _processor_chat_template(path)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if image_token_id != config.image_token_index:
        log.warning("%s: the tokenizer's <image> id %d differs from config image_token_index %d; deco uses %d",
                    path, image_token_id, config.image_token_index, image_token_id)
    fit_embeddings(llm, tokenizer)
    pad_to_square = bool(image_settings.get("do_pad", False))
    sections = {
        "model": {"dtype": dtype, "load_from": None, "allow_pickle": allow_pickle},
        "vision": {"pretrained": None, "arch": arch, "hf_config": {}, "feature_layer": config.vision_feature_layer,
                   "pad_to_square": pad_to_square, "freeze": True},
        "projector": {"name": projector.name, "options": dict(vars(projector.config))},
        "llm": {"pretrained": None, "arch": config.text_config.model_type if config.text_config.model_type in
                ("llama", "qwen2") else "llama", "hf_config": {}, "tokenizer": None,
                "attn_implementation": "sdpa"},
    }
    model = DecoModel(tower, projector, llm, tokenizer, image_token_id, pad_to_square, config=sections)
    log.info("imported %s: %s tower (layer %d), %s projector, %s LLM, %d image tokens", path, arch,
             tower.feature_layer, projector.name, config.text_config.model_type, model.num_image_tokens)
    return model.eval()


def _check_image_size(path: Path, tower: HFVisionTower, settings: dict[str, Any]) -> None:
    crop = settings.get("crop_size") if settings.get("do_center_crop", True) else settings.get("size")
    side = crop.get("height") if isinstance(crop, dict) else crop
    if side is not None and side != tower.image_size:
        log.warning("%s: the image processor makes %s px images but the vision tower takes %d px; deco uses %d",
                    path, side, tower.image_size, tower.image_size)


def _processor_chat_template(path: Path) -> str | None:
    for name in ("chat_template.jinja", "chat_template.json"):
        file = path / name
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            return json.loads(text).get("chat_template") if name.endswith(".json") else text
    return None


# ----------------------------------------------------------------------------------------- export


def llava_projector_state(model: DecoModel) -> tuple[str, dict[str, torch.Tensor]]:
    """(projector_hidden_act, linear_1/linear_2 tensors) for an `mlp`/`linear` projector, else a ConfigError."""
    projector = model.projector
    name = projector.name
    if name == "mlp" and projector.config.depth == 2:
        s = projector.state_dict()
        return projector.config.activation, {"linear_1.weight": s["mlp.0.weight"], "linear_1.bias": s["mlp.0.bias"],
                                             "linear_2.weight": s["mlp.2.weight"], "linear_2.bias": s["mlp.2.bias"]}
    if name in ("linear", "mlp") and (name == "linear" or projector.config.depth == 1):
        s = projector.state_dict()
        weight, bias = (s["linear.weight"], s["linear.bias"]) if name == "linear" else (s["mlp.0.weight"],
                                                                                         s["mlp.0.bias"])
        dl = weight.shape[0]
        # HF LLaVA always has two layers: an identity activation and an identity linear_2 make the
        # second one a no-op (exact in floating point), at the cost of Dl x Dl stored numbers.
        log.info("linear projector exported as linear_1 + identity activation + identity linear_2 (%d x %d)", dl, dl)
        eye = torch.eye(dl, dtype=weight.dtype)
        return "linear", {"linear_1.weight": weight, "linear_1.bias": bias,
                          "linear_2.weight": eye, "linear_2.bias": torch.zeros(dl, dtype=weight.dtype)}
    detail = f"mlp of depth {projector.config.depth}" if name == "mlp" else f"'{name}'"
    raise ConfigError(
        f"HF LLaVA can only express per-patch linear or 2-layer MLP projectors, not the {detail} projector "
        f"({model.vision_tower.num_patches} patches -> {model.num_image_tokens} tokens); export with "
        "--format deco for a folder that deco.model.load_model reads"
    )


def _hf_tower(model: DecoModel) -> tuple[HFVisionTower, str]:
    tower = model.vision_tower
    if not isinstance(tower, HFVisionTower):
        raise ConfigError(
            f"the vision tower is a {type(tower).__name__} (built in-process); HF LLaVA needs an HF CLIP or "
            "SigLIP vision model: export with --format deco"
        )
    expected_prefix = _VISION[tower.arch][2]
    if tower.num_prefix_tokens != expected_prefix:
        raise ConfigError(f"a {tower.arch} tower with {tower.num_prefix_tokens} prefix tokens has no HF LLaVA form")
    return tower, _VISION[tower.arch][1]


def _require_plain_llm(model: DecoModel) -> PreTrainedModel:
    llm = model.llm
    if not isinstance(llm, PreTrainedModel) or hasattr(llm, "peft_config"):
        raise ConfigError("the LLM carries LoRA adapters: call deco.interop.lora.merge_lora(model) before exporting")
    return llm


def build_hf_llava(model: DecoModel) -> LlavaForConditionalGeneration:
    """An HF LlavaForConditionalGeneration sharing the deco model's modules (nothing is copied)."""
    act, projector_state = llava_projector_state(model)
    tower, strategy = _hf_tower(model)
    llm = _require_plain_llm(model)
    text_config = llm.config
    config = LlavaConfig(
        vision_config=tower.model.config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=model.image_token_id,
        projector_hidden_act=act,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=tower.feature_layer,
        image_seq_length=model.num_image_tokens,
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
    with torch.device("meta"):
        hf = LlavaForConditionalGeneration(config)
    hf.model.vision_tower = tower.model
    hf.model.language_model = getattr(llm, llm.base_model_prefix)
    hf.lm_head = llm.get_output_embeddings()
    dtype = llm.get_input_embeddings().weight.dtype
    hf.model.multi_modal_projector.load_state_dict(
        {k: v.detach().to(dtype).clone() for k, v in projector_state.items()}, strict=True, assign=True
    )
    hf.config.text_config = hf.model.language_model.config
    hf.config.vision_config = tower.model.config
    hf.generation_config = llm.generation_config
    leftovers = [n for n, t in [*hf.named_parameters(), *hf.named_buffers()] if t.is_meta]
    if leftovers:
        raise ConfigError(f"internal: HF LLaVA tensors left unset: {leftovers[:3]}")
    return hf.eval()


def hf_image_processor(model: DecoModel) -> Any:
    """The HF image processor doing what deco's transform does (resize, crop/no crop, pad, normalise)."""
    transform = model.vision_tower.transform(model.pad_to_square)
    side = transform.size
    size = {"shortest_edge": side} if transform.crop else {"height": side, "width": side}
    with _quiet_transformers():  # without torchvision HF warns that it falls back to its PIL backend
        from transformers import LlavaImageProcessor

        return LlavaImageProcessor(
            size=size, crop_size={"height": side, "width": side}, do_center_crop=transform.crop,
            do_pad=transform.pad_to_square, image_mean=list(transform.mean), image_std=list(transform.std),
            resample=3,  # PIL bicubic, as deco's ImageTransform
        )


def export_hf_llava(model: DecoModel, out: str | Path, template: str | None = None) -> Path:
    """Write an HF LLaVA folder (config, safetensors, tokenizer, processor, chat template) from an mlp/linear model.

    `template` is a deco template name; it becomes the Jinja chat template of the processor and tokenizer
    (None keeps the tokenizer's own chat template, if it has one).
    """
    import copy

    from transformers import LlavaProcessor

    out = Path(out)
    hf = build_hf_llava(model)
    tokenizer = copy.deepcopy(model.tokenizer)
    if template is not None:
        tokenizer.chat_template = jinja_chat_template(template)
    tower, strategy = _hf_tower(model)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out))
    processor = LlavaProcessor(
        image_processor=hf_image_processor(model),
        tokenizer=tokenizer,
        patch_size=tower.patch_size,
        vision_feature_select_strategy=strategy,
        chat_template=tokenizer.chat_template,
        image_token="<image>",
        num_additional_image_tokens=_VISION[tower.arch][2],
    )
    processor.save_pretrained(str(out))
    log.info("wrote HF LLaVA checkpoint to %s", out)
    return out
