"""Vision towers, the multimodal model, its processor, and loading/saving."""

from deco.model.builder import build_model, load_model, load_projector_weights, save_model
from deco.model.multimodal import DecoModel
from deco.model.processor import ImageTransform, Processor
from deco.model.vision import HFVisionTower, VisionTower, load_vision_tower
from deco.quiet import quiet_weight_loading

quiet_weight_loading()  # every command loads models through here: no per-part "Loading weights" bars

__all__ = [
    "DecoModel",
    "HFVisionTower",
    "ImageTransform",
    "Processor",
    "VisionTower",
    "build_model",
    "load_model",
    "load_projector_weights",
    "load_vision_tower",
    "save_model",
]
