"""The vision tower's attention at its feature layer: per-patch importance and keys for VisionZip/VisPruner.

The references run CLIP with `output_attentions=True` and read `attentions[select_layer]` (the layer whose
output is the feature) and a hook's key states (VisionZip's `metric`). Here the same layer's attention is
recomputed from its input hidden state with the layer's own modules, in the one encoder pass that gives
the features, so any attention kernel can run the rest of the tower. Tested against HF's eager attentions.

Importance per patch: with a [CLS] token, the [CLS] row of the attention, summed over heads (VisionZip;
VisPruner averages, which ranks the same). A tower without [CLS] (SigLIP, the demo's tiny ViT) has no such
row; there the score is the attention each patch receives averaged over all patch queries, the usual
stand-in (stated in docs/reducers.md) rather than a refusal, so every tower can be compared.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from deco.errors import ConfigError
from deco.model.vision import VisionTower
from deco.reducers.cues import Cues


def _qk_tiny_vit(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Queries and keys [I, H, T, hd] of a tiny-ViT block (nn.MultiheadAttention after norm1)."""
    attn: nn.MultiheadAttention = block.attn  # type: ignore[assignment]
    h = block.norm1(x)  # type: ignore[operator]
    width, heads = attn.embed_dim, attn.num_heads
    w_q, w_k, _ = attn.in_proj_weight.split(width)
    b_q, b_k, _ = (attn.in_proj_bias.split(width) if attn.in_proj_bias is not None else (None, None, None))
    q, k = nn.functional.linear(h, w_q, b_q), nn.functional.linear(h, w_k, b_k)
    split = (x.shape[0], x.shape[1], heads, width // heads)
    return q.view(split).transpose(1, 2), k.view(split).transpose(1, 2), 1.0 / math.sqrt(width // heads)


def _qk_hf(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Queries and keys [I, H, T, hd] of an HF CLIP/SigLIP encoder layer (self_attn after layer_norm1)."""
    attn = layer.self_attn  # type: ignore[union-attr]
    h = layer.layer_norm1(x)  # type: ignore[operator]
    heads = attn.num_heads
    split = (x.shape[0], x.shape[1], heads, attn.head_dim)
    q, k = attn.q_proj(h).view(split).transpose(1, 2), attn.k_proj(h).view(split).transpose(1, 2)
    return q, k, float(attn.scale)


def _layers(tower: VisionTower) -> nn.ModuleList:
    blocks = getattr(getattr(tower, "model", None), "blocks", None)  # tiny ViT
    if isinstance(blocks, nn.ModuleList):
        return blocks
    trunk = getattr(tower, "_trunk", lambda: None)()
    if trunk is None:
        raise ConfigError(f"attention-based reducers cannot read the attention of a {type(tower).__name__}; "
                          "use random, pool or divprune")
    return trunk[2]


def tower_attention(tower: VisionTower, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass -> (features [I, N, Dv], attention probs [I, H, T, T], keys [I, H, T, hd]) at the feature
    layer, T = prefix + N."""
    return _timed_attention(tower, pixel_values)[:3]


def _timed_attention(tower: VisionTower, pixel_values: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """tower_attention plus the seconds spent beyond the encoder pass (the recomputed attention map)."""
    n_states = tower.num_layers + 1
    layer = tower.feature_layer % n_states
    if layer == 0:
        raise ConfigError("attention-based reducers need a feature layer after the embeddings (feature_layer != 0)")
    states = tower.hidden_states(pixel_values, upto=layer)
    start = time.perf_counter()  # what the reducer adds to the encoder pass the model runs anyway
    x = states[layer - 1]  # the input of the layer whose output is the feature
    module = _layers(tower)[layer - 1]
    q, k, scale = (_qk_tiny_vit if hasattr(module, "attn") else _qk_hf)(module, x)
    probs = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * scale, dim=-1)  # no mask: patches see all
    return states[layer][:, tower.num_prefix_tokens:], probs, k, time.perf_counter() - start


def tower_cues(tower: VisionTower, pixel_values: torch.Tensor) -> tuple[torch.Tensor, Cues]:
    """Features [I, N, Dv] and the Cues (importance [I, N], keys [I, N, hd]) of one encoder pass."""
    features, probs, keys, seconds = _timed_attention(tower, pixel_values)
    start = time.perf_counter()
    p = tower.num_prefix_tokens
    # [CLS] -> patches summed over heads (VisionZip); without [CLS], attention received averaged over queries
    importance = probs[:, :, 0, p:].sum(dim=1) if p else probs.mean(dim=2).sum(dim=1)
    cues = Cues(importance=importance, keys=keys[:, :, p:].mean(dim=1))  # keys: heads averaged
    cues.seconds = seconds + time.perf_counter() - start
    return features, cues
