"""Interoperability: HF LLaVA checkpoints in and out, BLIP-2 Q-Former initialisation, LoRA, chat.

- `import_llava_hf(path)` / `export_hf_llava(model, out)`: LlavaForConditionalGeneration folders.
- `export_model(path, out, fmt)`: what `deco export` does (hf-llava or the deco folder).
- `init_qformer_from_blip2(projector, path)`: a Q-Former projector from a Blip2Model checkpoint.
- `apply_lora` / `merge_lora` / `save_lora` / `load_lora`: PEFT LoRA on the LLM (stage 2).
- `ChatSession`, `load_any_model`, `prompt_style`: what `deco chat` does.
"""

from deco.interop.blip2 import Blip2InitReport, init_qformer_from_blip2
from deco.interop.chat import ChatSession, GenerationOptions
from deco.interop.chat_template import jinja_chat_template, match_template
from deco.interop.export import export_model, save_deco
from deco.interop.llava_hf import build_hf_llava, export_hf_llava, import_llava_hf
from deco.interop.lora import apply_lora, has_lora, load_lora, merge_lora, save_lora
from deco.interop.resolve import PromptStyle, load_any_model, locate_model, prompt_style

__all__ = [
    "Blip2InitReport",
    "ChatSession",
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
    "save_deco",
    "save_lora",
]
