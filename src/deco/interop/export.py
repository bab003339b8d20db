"""Export a model to a folder someone else can load: a transformers model of model_type "deco" (`hf`, any
projector), HF LLaVA (`hf-llava`, mlp/linear projectors) or deco's own format (`deco`).

Every folder holds exactly what a hub upload would: configs, safetensors weights, tokenizer files, the
chat template and a model card (README.md: projector, tokens per image, towers, the training run and
any `deco score` results beside it); no pickles, no training state. `hf` loads with
`AutoModelForImageTextToText.from_pretrained(DIR)` after `import deco`; the deco folder loads with

    from deco.model import load_model
    model = load_model("DIR")
    answer = model.generate(**model.processor()(prompt, images=[image]), max_new_tokens=64)
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from deco.errors import ConfigError
from deco.interop.chat_template import jinja_chat_template
from deco.interop.checkpoint import find_pickles
from deco.interop.model_card import render_card
from deco.interop.resolve import load_any_model, prompt_style
from deco.model import DecoModel, load_model, save_model

FORMATS = ("hf", "hf-llava", "deco")
CARD_FILE = "README.md"


def save_deco(model: DecoModel, out: str | Path, template: str | None = None) -> Path:
    """save_model, with the conversation template recorded as the tokenizer's chat template."""
    if hasattr(model.llm, "peft_config"):
        raise ConfigError("the LLM carries LoRA adapters: call deco.interop.lora.merge_lora(model) before exporting")
    tokenizer = model.tokenizer
    if template is not None:
        model.tokenizer = copy.deepcopy(tokenizer)
        model.tokenizer.chat_template = jinja_chat_template(template)
    try:
        return save_model(model, out)
    finally:
        model.tokenizer = tokenizer


def save_hf(model: DecoModel, out: str | Path, template: str | None = None, card: str | None = None) -> Path:
    """A transformers folder (model_type "deco") for any projector, with the chat template and a model card."""
    from deco.interop.hf_model import to_hf

    tokenizer = model.tokenizer
    if template is not None:
        model.tokenizer = copy.deepcopy(tokenizer)
        model.tokenizer.chat_template = jinja_chat_template(template)
    try:
        to_hf(model, card).save_pretrained(out)
    finally:
        model.tokenizer = tokenizer
    return Path(out)


def probe_inputs(model: DecoModel, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fixed text + image batch (random pixels) for comparing a model with its exported copy."""
    generator = torch.Generator().manual_seed(seed)
    size = model.vision_tower.image_size
    text = [model.tokenizer.bos_token_id] if model.tokenizer.bos_token_id is not None else []
    text += [int(t) for t in torch.randint(10, 200, (6,), generator=generator)]
    ids = text[:3] + [model.image_token_id] * model.num_image_tokens + text[3:]
    return {"input_ids": torch.tensor([ids]), "pixel_values": torch.randn(1, 3, size, size, generator=generator)}


@torch.no_grad()
def logits_difference(model: DecoModel, out: Path, fmt: str) -> float:
    """Largest absolute logit difference between `model` and the folder it was exported to."""
    batch = probe_inputs(model)
    device = next(model.parameters()).device
    expected = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
    if fmt == "hf-llava":
        from transformers import LlavaForConditionalGeneration

        reloaded = LlavaForConditionalGeneration.from_pretrained(str(out), dtype=model.llm.dtype).eval()
    elif fmt == "hf":
        from transformers import AutoModelForImageTextToText

        reloaded = AutoModelForImageTextToText.from_pretrained(str(out)).eval()
    else:
        reloaded = load_model(out).eval()
    got = reloaded(**batch).logits.float()
    return float((expected - got).abs().max())


def export_model(
    path: str | Path,
    out: str | Path,
    fmt: str = "hf-llava",
    template: str | None = None,
    allow_pickle: bool = False,
    verify: bool = False,
    dtype: str | None = None,
) -> tuple[Path, float | None]:
    """Load the model at `path` (run, deco folder or HF LLaVA), write it to `out` as `fmt`.

    Returns the folder and, with `verify`, the largest logit difference after reloading it.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    model = load_any_model(path, allow_pickle=allow_pickle, dtype=dtype)
    style = prompt_style(model, path, template)
    out = Path(out)
    card = render_card(model, path)  # the run's record and scores sit beside the source, not the export
    if fmt == "hf-llava":
        from deco.interop.llava_hf import export_hf_llava, llava_projector_state

        llava_projector_state(model)  # refuse compressing projectors before writing anything
        export_hf_llava(model, out, style.template)
    elif fmt == "hf":
        save_hf(model, out, style.template, card)
    else:
        save_deco(model, out, style.template)
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    pickles = find_pickles(out)
    if pickles:  # never expected; a hub upload of this folder must not carry pickles
        raise ConfigError(f"export wrote pickle files {pickles[:3]}; please report this")
    return out, (logits_difference(model, out, fmt) if verify else None)
