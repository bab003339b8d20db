"""deco models as transformers models: `DecoVLMConfig` + `DecoForConditionalGeneration`, for every projector.

Registered with transformers' Auto classes when `deco` is imported (see `deco.hf_registration`), so

    model = AutoModelForImageTextToText.from_pretrained("out/hf")    # or a Hub id
    processor = model.processor()                                     # the tokenizer saved beside it

works like any transformers model: `save_pretrained` writes config.json (model_type "deco"),
model.safetensors, the tokenizer and a model card (README.md); `push_to_hub` uploads exactly that folder.
The weights are the DecoModel's own (`deco.vision_tower.model.*`, `deco.projector.*`, `deco.llm.*`), and
the forward pass is DecoModel's, so logits are identical to deco's.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from deco.errors import ConfigError

MODEL_TYPE = "deco"
CARD_FILE = "README.md"
# HF vision model types the tower can be rebuilt from (vision.arch -> config model_type).
_VISION_TYPES = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}


def _sub_config(value: Any, default_type: str) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return value
    data = dict(value or {})
    return CONFIG_MAPPING[data.pop("model_type", default_type)](**data)


class DecoVLMConfig(PretrainedConfig):
    """A deco model: HF vision and text configs plus deco's own sections (projector, feature layer, ...)."""

    model_type = MODEL_TYPE
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config: dict[str, Any] | PretrainedConfig | None = None,
        text_config: dict[str, Any] | PretrainedConfig | None = None,
        deco: dict[str, Any] | None = None,
        vision_arch: str = "clip",
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        image_token_id: int | None = None,
        num_image_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        if vision_arch not in _VISION_TYPES:
            raise ConfigError(f"vision_arch '{vision_arch}': HF deco models rebuild {', '.join(_VISION_TYPES)} towers")
        self.vision_config = _sub_config(vision_config, _VISION_TYPES[vision_arch])
        self.text_config = _sub_config(text_config, "llama")
        self.deco = deco or {}  # the sections save_model writes: model, vision, projector, llm
        self.vision_arch = vision_arch
        self.image_mean = list(image_mean) if image_mean is not None else None
        self.image_std = list(image_std) if image_std is not None else None
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens
        kwargs.setdefault("tie_word_embeddings", False)  # the LLM ties its own weights if its config says so
        super().__init__(**kwargs)


def _build_deco(config: DecoVLMConfig) -> Any:
    """A DecoModel with random weights in the shape `config` describes (weights come from the checkpoint)."""
    from deco.config import AnyResSection, dataclass_from_dict
    from deco.model.builder import enable_anyres_from
    from deco.model.multimodal import DecoModel
    from deco.model.vision import _ARCHS, HFVisionTower
    from deco.projectors import build_projector

    sections = copy.deepcopy(config.deco)
    vision, projector_section = sections.get("vision", {}), sections.get("projector", {})
    model_cls = _ARCHS[config.vision_arch][1]
    tower = HFVisionTower(model_cls(config.vision_config), config.vision_arch, vision.get("feature_layer", -2),
                          config.image_mean, config.image_std)
    llm = AutoModelForCausalLM.from_config(config.text_config)
    projector = build_projector(projector_section.get("name", "mlp"), tower.hidden_size,
                                llm.get_input_embeddings().embedding_dim, projector_section.get("options") or {})
    model = DecoModel(tower, projector, llm, None, config.image_token_id, vision.get("pad_to_square", True),
                      config=sections, multi_level_layers=vision.get("multi_level_layers"))
    anyres = vision.get("anyres") or {}
    if anyres.get("enabled"):
        enable_anyres_from(model, dataclass_from_dict(AnyResSection, anyres, "config.json deco.vision.anyres", "vision.anyres."))
    return model


class DecoForConditionalGeneration(PreTrainedModel):
    """A DecoModel (vision tower -> projector -> LLM) as a transformers PreTrainedModel."""

    config_class = DecoVLMConfig
    base_model_prefix = "deco"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    _supports_sdpa = True

    def __init__(self, config: DecoVLMConfig, deco_model: Any = None) -> None:
        super().__init__(config)
        self.deco = deco_model if deco_model is not None else _build_deco(config)
        self.post_init()
        # post_init gathers tied weights and unsplittable blocks from direct children only; ours sit deeper.
        for prefix, sub in (("deco.llm", self.deco.llm), ("deco.vision_tower.model", self.deco.vision_tower.model)):
            tied = getattr(sub, "all_tied_weights_keys", None) or {}
            self.all_tied_weights_keys.update({f"{prefix}.{k}": f"{prefix}.{v}" for k, v in tied.items()})
            self._no_split_modules |= set(getattr(sub, "_no_split_modules", None) or [])
        self.card: str | None = None  # README.md written by save_pretrained (deco.interop.model_card)

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Every weight comes from the checkpoint; projectors initialise themselves when built.
        return

    @classmethod
    def from_deco(cls, model: Any, card: str | None = None) -> DecoForConditionalGeneration:
        """Wrap a DecoModel (weights shared, nothing copied) for save_pretrained / push_to_hub."""
        from deco.model.vision import HFVisionTower

        tower = model.vision_tower
        if not isinstance(tower, HFVisionTower):
            raise ConfigError(
                f"vision tower {type(tower).__name__} is not an HF CLIP/SigLIP model: transformers cannot rebuild it; "
                "export with --format deco instead"
            )
        if hasattr(model.llm, "peft_config"):
            raise ConfigError("the LLM carries LoRA adapters: call deco.interop.lora.merge_lora(model) first")
        config = DecoVLMConfig(
            # Copies: PreTrainedModel.__init__ adjusts its configs' attention settings, which must not
            # reach the wrapped model's own (shared) config objects.
            vision_config=copy.deepcopy(tower.model.config), text_config=copy.deepcopy(model.llm.config),
            deco=copy.deepcopy(model.config),
            vision_arch=tower.arch, image_mean=list(tower.mean), image_std=list(tower.std),
            image_token_id=model.image_token_id, num_image_tokens=model.num_image_tokens,
            dtype=str(model.llm.dtype).removeprefix("torch."),
        )
        hf = cls(config, deco_model=model)
        hf.card = card
        return hf

    @property
    def tokenizer(self) -> Any:
        """The tokenizer saved with the model (None when built from a bare config)."""
        return self.deco.tokenizer

    def processor(self) -> Any:
        """deco's processor: the tower's image transform and M placeholders per image."""
        if self.deco.tokenizer is None:
            raise ConfigError("this model has no tokenizer: load it from a folder that holds one (save_pretrained writes it)")
        return self.deco.processor()

    def get_input_embeddings(self) -> torch.nn.Module:
        """The LLM's token embeddings."""
        return self.deco.llm.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        image_layouts: Any = None,
        **kwargs: Any,
    ) -> Any:
        """DecoModel's forward: the LLM's CausalLMOutput (loss when labels are given)."""
        return self.deco(input_ids, attention_mask, pixel_values, labels, image_layouts, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """DecoModel.generate: greedy/sampled new token ids after the prompt (KV cache)."""
        if self.deco.tokenizer is None:
            raise ConfigError("generate needs the tokenizer saved with the model (load the folder save_pretrained wrote)")
        return self.deco.generate(input_ids, **kwargs)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """transformers' save_pretrained, plus the tokenizer and the model card (README.md)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.deco.tokenizer is not None:
            self.deco.tokenizer.save_pretrained(str(save_directory))
        from deco.interop.model_card import render_card

        card = self.card if self.card is not None else render_card(self.deco)
        Path(save_directory, CARD_FILE).write_text(card, encoding="utf-8")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """transformers' from_pretrained, then the tokenizer from the same folder or Hub repo."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model.deco.tokenizer = _load_tokenizer(pretrained_model_name_or_path, kwargs)
        return model

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,  # type: ignore[override]
                    commit_message: str = "Upload deco model", revision: str | None = None,
                    create_pr: bool = False, **save_kwargs: Any) -> Any:
        """Upload exactly what save_pretrained writes (weights, config, tokenizer, model card) to `repo_id`."""
        from huggingface_hub import HfApi

        api = HfApi(token=token if isinstance(token, str) else None)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, **save_kwargs)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                     revision=revision, create_pr=create_pr)


def _load_tokenizer(path: str | Path, kwargs: dict[str, Any]) -> Any:
    """The tokenizer beside the weights, or None when the folder/repo has none."""
    from transformers import AutoTokenizer

    from deco.model.tokenizer import ensure_image_token, ensure_pad_token

    options = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **options)
    except (OSError, ValueError):
        return None
    ensure_pad_token(tokenizer)
    ensure_image_token(tokenizer)
    return tokenizer


def to_hf(model: Any, card: str | None = None) -> DecoForConditionalGeneration:
    """A DecoModel as a transformers model (weights shared): `to_hf(model).save_pretrained("out")`."""
    return DecoForConditionalGeneration.from_deco(model, card)


def register_auto_classes() -> None:
    """Register DecoVLMConfig / DecoForConditionalGeneration with AutoConfig and the Auto model classes."""
    from transformers import AutoModel, AutoModelForImageTextToText

    AutoConfig.register(MODEL_TYPE, DecoVLMConfig, exist_ok=True)
    for auto in (AutoModelForImageTextToText, AutoModel):
        auto.register(DecoVLMConfig, DecoForConditionalGeneration, exist_ok=True)


register_auto_classes()  # on import; deco.hf_registration imports this module once transformers is imported
