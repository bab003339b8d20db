"""Up-front memory estimate: refuse a benchmark that would not fit before building anything.

Models are built on the meta device (shapes only, no memory), so a 7B-shaped config costs nothing
to estimate. The estimate is deliberately on the high side (sdpa may not keep attention
probabilities; counted anyway) so that a refused run never starts swapping.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from deco.bench.memory import gib
from deco.bench.sizes import SizeSpec
from deco.errors import ConfigError
from deco.model import load_vision_tower
from deco.model.llm import DTYPES, load_llm
from deco.projectors import build_projector

_MARGIN = 1.15


def _config(path: str, what: str) -> Any:
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the {what} config from '{path}' to estimate memory: {exc}") from None


def _meta_vision(spec: SizeSpec, path: str | None) -> tuple[int, Any]:
    with torch.device("meta"):
        if path is None:
            tower = load_vision_tower(None, spec.vision_arch, spec.vision_config)
            return sum(p.numel() for p in tower.parameters()), tower.model.config
        config = _config(path, "vision tower")
        model = AutoModel.from_config(config)
    cfg = getattr(config, "vision_config", config)
    return sum(p.numel() for p in model.parameters()), cfg


def _meta_llm(spec: SizeSpec, path: str | None) -> tuple[int, Any]:
    with torch.device("meta"):
        if path is None:
            llm = load_llm(None, spec.llm_arch, spec.llm_config)
            return sum(p.numel() for p in llm.parameters()), llm.config
        config = _config(path, "LLM")
        llm = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in llm.parameters()), config


def vision_geometry(spec: SizeSpec, path: str | None) -> tuple[int, tuple[int, int]]:
    """(Dv, patch grid) of the vision tower the run will use, without building it."""
    _, cfg = _meta_vision(spec, path)
    side = cfg.image_size // cfg.patch_size
    return cfg.hidden_size, (side, side)


def estimate_memory(
    spec: SizeSpec,
    plan: list[tuple[str, str, dict]],
    dtype: str,
    vision: str | None = None,
    llm: str | None = None,
) -> dict[str, Any]:
    """Bytes the run needs: weights, AdamW state of both stages, gradients, activations."""
    elem = torch.tensor([], dtype=DTYPES[dtype]).element_size()
    n_vision, vcfg = _meta_vision(spec, vision)
    n_llm, lcfg = _meta_llm(spec, llm)
    dv, dl = vcfg.hidden_size, lcfg.hidden_size
    side = vcfg.image_size // vcfg.patch_size
    n_proj, max_proj, max_tokens = [], 0, 0
    for _, name, options in plan:
        with torch.device("meta"):
            proj = build_projector(name, dv, dl, options)
        count = sum(p.numel() for p in proj.parameters())
        n_proj.append(count)
        max_proj = max(max_proj, count)
        max_tokens = max(max_tokens, proj.num_tokens((side, side)))
    # deco train keeps what it trains in float32 (master weights): in stage 2 the LLM and every projector.
    weights = n_vision * elem + (n_llm + sum(n_proj)) * 4
    # AdamW: two float32 moments per trained parameter; stage 1 trains projectors, stage 2 also the LLM.
    optimizer = 2 * 4 * sum(n_proj) + 2 * 4 * (n_llm + sum(n_proj))
    grads = (n_llm + max_proj) * 4
    b = spec.batch_size
    seq = max_tokens + spec.train_text_tokens + 8
    heads = lcfg.num_attention_heads
    inter = getattr(lcfg, "intermediate_size", 4 * dl)
    per_layer = b * seq * (12 * dl + 4 * inter) * elem + b * heads * seq * seq * elem
    logits = 3 * b * seq * lcfg.vocab_size * 4  # logits, fp32 upcast for the loss, its gradient
    patches = side * side + 1
    vision_act = b * patches * ((vcfg.num_hidden_layers + 1) * vcfg.hidden_size + 8 * vcfg.hidden_size) * elem
    projector_act = 16 * b * patches * max(dv, dl) * 4
    activations = lcfg.num_hidden_layers * per_layer + logits + vision_act + projector_act
    total = int(_MARGIN * (weights + optimizer + grads + activations))
    return {
        "total_bytes": total,
        "weights_bytes": int(weights),
        "optimizer_bytes": int(optimizer),
        "grad_bytes": int(grads),
        "activation_bytes": int(activations),
        "vision_params": n_vision,
        "llm_params": n_llm,
        "projector_params": n_proj,
    }


def refuse_if_too_big(estimate: dict[str, Any], available: int | None, where: str) -> None:
    """ConfigError naming the estimate and its parts when it exceeds the available memory."""
    if available is None or estimate["total_bytes"] <= available:
        return
    raise ConfigError(
        f"this benchmark needs an estimated {gib(estimate['total_bytes'])} but only {gib(available)} "
        f"is available on {where} (weights {gib(estimate['weights_bytes'])}, AdamW state "
        f"{gib(estimate['optimizer_bytes'])}, gradients {gib(estimate['grad_bytes'])}, activations "
        f"{gib(estimate['activation_bytes'])}, plus {round((_MARGIN - 1) * 100)}% margin); "
        "use fewer --proxy-layers, projectors or --tokens, a smaller --batch-size, or --dtype bfloat16"
    )
