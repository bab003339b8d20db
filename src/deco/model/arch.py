"""What config validation knows about the HF vision encoders before transformers is imported.

Importing transformers' config classes costs seconds (they pull in torch), so `deco config` and a
mistyped `deco train` override are checked against these facts instead; tests/test_startup.py pins
them against transformers' own defaults.
"""

from __future__ import annotations

from typing import Any

from deco.errors import ConfigError

# vision.arch -> the layer count of its HF config class when `num_hidden_layers` is not given
# (CLIPVisionConfig, SiglipVisionConfig).
DEFAULT_ENCODER_DEPTH = {"clip": 12, "siglip": 12}


def hf_encoder_depth(arch: str, hf_config: dict[str, Any] | None = None) -> int:
    """Layer count of the randomly initialised HF encoder `arch` + `hf_config` would build (no torch)."""
    if arch not in DEFAULT_ENCODER_DEPTH:
        raise ConfigError(f"vision.arch '{arch}' is not supported; valid: {', '.join(DEFAULT_ENCODER_DEPTH)}")
    depth = (hf_config or {}).get("num_hidden_layers", DEFAULT_ENCODER_DEPTH[arch])
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"vision.hf_config is invalid for {arch}: 'num_hidden_layers' must be a positive int, "
                          f"got {depth!r}")
    return depth
