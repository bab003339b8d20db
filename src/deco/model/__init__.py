"""Vision towers, the multimodal model, its processor, and loading/saving.

Exports are lazy: config validation imports torch-free modules of this package (layout.py, arch.py,
tokens.py), and importing the package must not load transformers for them (see lazy.py).
"""

from deco.hf_registration import when_transformers_imported
from deco.lazy import lazy_exports
from deco.quiet import quiet_weight_loading

# Every command loads models through this package: no per-part "Loading weights" bars. Installed once
# transformers is imported, so that importing the package stays free of it.
when_transformers_imported(quiet_weight_loading)

_EXPORTS = {
    "build_model": "builder",
    "load_model": "builder",
    "load_projector_weights": "builder",
    "save_model": "builder",
    "DecoModel": "multimodal",
    "ImageTransform": "processor",
    "Processor": "processor",
    "HFVisionTower": "vision",
    "VisionTower": "vision",
    "load_vision_tower": "vision",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DecoModel",
    "HFVisionTower",
    "ImageTransform",
    "Processor",
    "VisionTower",
    "build_model",
    "load_model",
    "load_projector_weights",
    "save_model",
]
