"""Interoperability: HF LLaVA checkpoints in and out, BLIP-2 Q-Former initialisation, LoRA, chat.

- `import_llava_hf(path)` / `export_hf_llava(model, out)`: LlavaForConditionalGeneration folders.
- `export_model(path, out, fmt)`: what `deco export` does (hf, hf-llava or the deco folder, each with a model card).
- `to_hf(model)` / `DecoForConditionalGeneration` / `DecoVLMConfig`: any deco model as a transformers model
  (save_pretrained, AutoModelForImageTextToText.from_pretrained, push_to_hub); `render_card(model, source)`.
- `init_qformer_from_blip2(projector, path)`: a Q-Former projector from a Blip2Model checkpoint.
- `apply_lora` / `merge_lora` / `save_lora` / `load_lora`: PEFT LoRA on the LLM (stage 2).
- `ChatSession`, `load_any_model`, `prompt_style`: what `deco chat` does.
"""

from deco.lazy import lazy_exports

_EXPORTS = {
    "Blip2InitReport": "blip2",
    "init_qformer_from_blip2": "blip2",
    "ChatSession": "chat",
    "GenerationOptions": "chat",
    "jinja_chat_template": "chat_template",
    "match_template": "chat_template",
    "export_model": "export",
    "save_deco": "export",
    "save_hf": "export",
    "DecoForConditionalGeneration": "hf_model",
    "DecoVLMConfig": "hf_model",
    "to_hf": "hf_model",
    "render_card": "model_card",
    "build_hf_llava": "llava_hf",
    "export_hf_llava": "llava_hf",
    "import_llava_hf": "llava_hf",
    "apply_lora": "lora",
    "has_lora": "lora",
    "load_lora": "lora",
    "merge_lora": "lora",
    "save_lora": "lora",
    "PromptStyle": "resolve",
    "load_any_model": "resolve",
    "locate_model": "resolve",
    "prompt_style": "resolve",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "Blip2InitReport",
    "ChatSession",
    "DecoForConditionalGeneration",
    "DecoVLMConfig",
    "GenerationOptions",
    "PromptStyle",
    "apply_lora",
    "build_hf_llava",
    "export_hf_llava",
    "export_model",
    "has_lora",
    "import_llava_hf",
    "init_qformer_from_blip2",
    "jinja_chat_template",
    "load_any_model",
    "load_lora",
    "locate_model",
    "match_template",
    "merge_lora",
    "prompt_style",
    "render_card",
    "save_deco",
    "save_hf",
    "save_lora",
    "to_hf",
]
