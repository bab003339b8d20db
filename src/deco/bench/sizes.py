"""Named benchmark sizes: model shapes plus the workload (batch, text lengths, default projectors)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from deco.errors import ConfigError

# LLaVA-1.5 (arXiv 2310.03744): CLIP ViT-L/14-336 has 24 layers, Vicuna-7B (Llama-2-7B shapes) 32.
FULL_VISION_LAYERS = 24
FULL_LLM_LAYERS = 32


@dataclass
class SizeSpec:
    """One benchmark size: random-weight vision tower + LLM shapes and the measured workload."""

    name: str
    vision_arch: str
    vision_config: dict[str, Any]
    llm_arch: str
    llm_config: dict[str, Any]
    tokenizer: str = "byte-llama"
    batch_size: int = 1
    # Caption tokens after the image in a training sample (loss on these).
    train_text_tokens: int = 32
    # Question after the image for inference, and how many tokens are decoded after it.
    prompt: str = "\nDescribe the image in one sentence."
    new_tokens: int = 8
    projectors: list[str] = field(default_factory=lambda: ["mlp", "deco", "qformer", "cabstractor", "dabstractor"])
    tokens: list[int] = field(default_factory=lambda: [144])
    # Per-projector option overrides for this size (merged under the token-budget options).
    projector_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeats: int = 3
    warmup: int = 1
    # Layers the measured towers have vs the full model the figures are extrapolated to (None: no
    # extrapolation, the towers are the real thing).
    extrapolate_to: dict[str, int] | None = None
    peer_repeats: int = 5
    # deco train settings the timed training steps use unless `deco bench` options say otherwise
    # (bench/trainstep.Recipe fields: precision, accum, gradient_checkpointing_stage2).
    recipe: dict[str, Any] = field(default_factory=dict)

    def grid_side(self) -> int:
        """Patch grid side of the vision tower."""
        return self.vision_config["image_size"] // self.vision_config["patch_size"]


def _tiny() -> SizeSpec:
    # 96 px / patch 4 = 24x24 = 576 patches, the LLaVA-1.5 token count at toy widths, so token
    # ratios (576 -> 144 -> 64) are the real ones while a run stays within a minute on 2 cores.
    return SizeSpec(
        name="tiny",
        vision_arch="clip",
        vision_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 96, "patch_size": 4},
        llm_arch="llama",
        llm_config={"hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 261,
                    "max_position_embeddings": 2048},
        batch_size=2,
        train_text_tokens=48,
        new_tokens=16,
        tokens=[144, 64],
        # The reference Q-Former is BERT-base wide (768) whatever Dv/Dl are: at toy widths it would be
        # 30x the rest of the model. Scale it with the toy model, as the demo prototype did.
        projector_options={"qformer": {"hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512}},
        repeats=5,
        warmup=1,
        peer_repeats=60,  # forwards are ~0.1 s; the paired ratio needs many rounds for a 2% call
        recipe={"accum": 2},  # configs/tiny.yaml: global batch 4 = 2 per device x 2 accumulation steps
    )


def _proxy(layers: int) -> SizeSpec:
    # CLIP ViT-L/14-336 and Llama-2-7B / Vicuna-7B shapes with `layers` layers each (the tower stops at
    # its real 24, so `layers=32` is the full LLaVA-1.5 model and nothing is extrapolated), random weights.
    return SizeSpec(
        name="7b-proxy",
        vision_arch="clip",
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": min(layers, FULL_VISION_LAYERS),
                       "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
                       "projection_dim": 768},
        llm_arch="llama",
        llm_config={"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": layers,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5},
        batch_size=1,
        train_text_tokens=32,
        new_tokens=4,
        tokens=[144],
        repeats=3,
        warmup=0,
        # At full depth nothing is extrapolated: the figures are measurements of the whole model.
        extrapolate_to=None if layers >= FULL_LLM_LAYERS else {"vision_layers": FULL_VISION_LAYERS,
                                                                "llm_layers": FULL_LLM_LAYERS},
        peer_repeats=3,
        recipe={"gradient_checkpointing_stage2": True},  # LLaVA-1.5's stage 2 (configs/llava15-stage2.yaml)
    )


SIZES = ("tiny", "7b-proxy")


def get_size(name: str, proxy_layers: int = 2) -> SizeSpec:
    """The SizeSpec for `name`; `proxy_layers` sets the layer count of the 7b-proxy towers."""
    if name == "tiny":
        return _tiny()
    if name == "7b-proxy":
        # hidden_states[-2] needs at least two encoder layers; the LLM needs one.
        if (isinstance(proxy_layers, bool) or not isinstance(proxy_layers, int)
                or not 2 <= proxy_layers <= FULL_LLM_LAYERS):
            raise ConfigError(f"--proxy-layers must be an int from 2 (the vision tower takes its penultimate "
                              f"layer) to {FULL_LLM_LAYERS} (the full model), got {proxy_layers!r}")
        return _proxy(proxy_layers)
    raise ConfigError(f"unknown size '{name}'; valid sizes: {', '.join(SIZES)}")


def with_overrides(spec: SizeSpec, **changes: Any) -> SizeSpec:
    """A copy of `spec` with the given fields replaced (None values are ignored)."""
    return dataclasses.replace(spec, **{k: v for k, v in changes.items() if v is not None})
