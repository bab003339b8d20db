"""Inference measures: prefill (time to first token), per-token decode time, KV-cache bytes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from deco.bench.timing import now
from deco.model import DecoModel


def kv_bytes_per_token(llm: PreTrainedModel, layers: int | None = None) -> int:
    """KV-cache bytes one token costs across `layers` (default: the model's) decoder layers.

    Keys and values, each kv_heads x head_dim per layer, in the LLM's dtype (grouped-query
    attention stores only the kv heads).
    """
    cfg = llm.config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    elem = llm.get_input_embeddings().weight.element_size()
    return 2 * (layers if layers is not None else cfg.num_hidden_layers) * kv_heads * head_dim * elem


def cache_bytes(cache: Any) -> int:
    """Bytes held by an HF cache object (its key and value tensors)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return sum(
            t.numel() * t.element_size()
            for layer in layers
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
            if isinstance(t, torch.Tensor)
        )
    from torch.utils._pytree import tree_leaves

    return sum(t.numel() * t.element_size() for t in tree_leaves(cache) if isinstance(t, torch.Tensor))


def _no_phase(name: str) -> ContextManager[Any]:
    return contextlib.nullcontext()


# transformers 5.x renamed `past_key_values` to `cache` (outputs and forward arguments) in a minor release;
# both are in the supported range (the GPU image had 5.17, this machine 5.24).
_CACHE_ARG = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _cache_of(out: Any) -> Any:
    return getattr(out, _CACHE_ARG)


@torch.no_grad()
def prefill_and_decode(
    model: DecoModel,
    batch: dict[str, torch.Tensor],
    new_tokens: int,
    phase: Callable[[str], ContextManager[Any]] = _no_phase,
    seen: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Greedy generation with a KV cache, timed: {'prefill': s, 'decode_token': s per token}.

    Prefill = image encoding + projector + one LLM pass over the prompt that yields the first
    token (time to first token). Decode = `new_tokens` single-token steps on the cache. `phase`
    wraps each part (FLOP counting, memory); `seen` receives the cache size after prefill.
    """
    device = batch["input_ids"].device
    input_ids, mask = batch["input_ids"], batch["attention_mask"]
    t0 = now(device)
    with phase("prefill"):
        embeds = model.embed(input_ids, batch.get("pixel_values"))  # [B, T, Dl]
        out = model.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)  # [B, 1]
    t1 = now(device)
    cache = _cache_of(out)
    if seen is not None:
        seen["cache_bytes"] = cache_bytes(cache)
        seen["prompt_tokens"] = int(input_ids.shape[1])
    with phase("decode"):
        for _ in range(new_tokens):
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = model.llm(input_ids=token, attention_mask=mask, use_cache=True, **{_CACHE_ARG: cache})
            cache = _cache_of(out)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
    t2 = now(device)
    return {"prefill": t1 - t0, "decode_token": (t2 - t1) / max(new_tokens, 1)}
