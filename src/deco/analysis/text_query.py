"""Text-to-Query: for each answer token, its relevance over the visual tokens the LLM saw.

The LLM is a stack of causal self-attention layers, so Chefer et al.'s self-attention rule applies:
R = (I + Abar_L) ... (I + Abar_1) from the identity, with Abar_l = mean_h clamp(dA_l * A_l, min=0) and
the gradients taken of the logit the model gave the answer token (at the position that predicted it).
The row of that position, restricted to the M image-placeholder positions, is the token's map.
Maps come from `output_attentions=True` under eager attention (`hooks.eager_attention`); each batch
copy of the sequence explains one answer token, so one backward pass serves a chunk of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deco.analysis.hooks import eager_attention, llm_attention_module_names
from deco.analysis.query_patch import check_chunk_size, eval_mode
from deco.analysis.relevance import decoder_row, head_mean_relevance, row_normalise
from deco.errors import ConfigError, DataError, ShapeError
from deco.model.multimodal import DecoModel
from deco.model.tokens import IMAGE_TOKEN

DEFAULT_TEMPLATE = "vicuna_v1"


@dataclass
class TextQueryMap:
    """Relevance of the M visual tokens for each of J answer tokens: `maps` [J, M] rows sum to 1."""

    maps: torch.Tensor
    raw: torch.Tensor  # [J, M] R values before normalisation
    token_ids: list[int]
    tokens: list[str]  # each token's text piece (decoded in context)


def build_prompt(question: str, template: str | None = DEFAULT_TEMPLATE) -> str:
    """The inference prompt for one image and a question (the data package's templates; None = plain)."""
    if not isinstance(question, str) or not question.strip():
        raise DataError("the question is empty: give the text the model should answer about the image")
    if IMAGE_TOKEN in question and question.count(IMAGE_TOKEN) != 1:
        raise DataError(f"the question has {question.count(IMAGE_TOKEN)} {IMAGE_TOKEN} markers; one image is analysed")
    if template is None:
        return question if IMAGE_TOKEN in question else f"{IMAGE_TOKEN}\n{question.strip()}"
    from deco.data.templates import render_prompt

    return render_prompt(template, question.strip(), num_images=1)


def answer_text(answer: str, template: str | None = DEFAULT_TEMPLATE) -> str:
    """The text the model would generate for `answer` after the prompt (e.g. vicuna's leading space)."""
    if template is None:
        return answer
    from deco.data.templates import get_template

    tmpl = get_template(template)
    full = tmpl.answer_part(answer)
    return full[: -len(tmpl.end_of_turn)] if tmpl.end_of_turn and full.endswith(tmpl.end_of_turn) else full


def token_pieces(tokenizer: object, ids: list[int]) -> list[str]:
    """Each token's text in context: decode(ids[:k+1]) minus decode(ids[:k]) (byte tokenizers need context)."""
    decode = tokenizer.decode  # type: ignore[attr-defined]
    pieces, previous = [], ""
    for k in range(len(ids)):
        text = decode(ids[: k + 1], skip_special_tokens=False)
        if text.endswith("\ufffd") and k + 1 < len(ids):
            pieces.append("")  # a byte of an unfinished character: its text arrives with a later token
            continue
        pieces.append(text[len(previous):] if text.startswith(previous) else decode(ids[k : k + 1]))
        previous = text
    return pieces


@torch.no_grad()
def generate_answer(model: DecoModel, batch: dict[str, torch.Tensor], max_new_tokens: int) -> list[int]:
    """Greedy answer ids, cut at the first end-of-sequence token (kept alone if it is the whole answer)."""
    with eval_mode(model):
        new = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)[0].tolist()
    eos = model.tokenizer.eos_token_id
    if eos in new:
        new = new[: max(new.index(eos), 1)]
    return new


def text_to_query(
    model: DecoModel,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor,
    answer_start: int,
    chunk_size: int = 4,
) -> TextQueryMap:
    """Explain answer tokens input_ids[0, answer_start:] over the image's M placeholder positions.

    input_ids [1, T] hold the prompt (placeholders expanded) followed by the answer.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ShapeError(f"input_ids must be one sequence [1, T], got {tuple(input_ids.shape)}")
    check_chunk_size(chunk_size)
    t = input_ids.shape[1]
    if not 0 < answer_start < t:
        raise DataError(f"no answer tokens to explain (answer starts at {answer_start} of {t} tokens)")
    image_positions = (input_ids[0] == model.image_token_id).nonzero().squeeze(-1)  # [M]
    if image_positions.numel() != model.num_image_tokens:
        raise ShapeError(
            f"the sequence has {image_positions.numel()} image placeholders; one image gives "
            f"{model.num_image_tokens}"
        )
    with torch.no_grad():
        embeds = model.embed(input_ids, pixel_values)  # [1, T, D]
    ids = input_ids[0, answer_start:].tolist()
    rows = []
    with eval_mode(model), eager_attention(model.llm), torch.enable_grad():
        for s in range(0, len(ids), chunk_size):
            positions = torch.arange(answer_start + s, answer_start + min(s + chunk_size, len(ids)))
            rows.append(_explain_positions(model, embeds, input_ids[0], positions)[:, image_positions])
    raw = torch.cat(rows)  # [J, M]
    return TextQueryMap(row_normalise(raw), raw, ids, token_pieces(model.tokenizer, ids))


def _explain_positions(
    model: DecoModel, embeds: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """[c, T] relevance rows: batch copy k explains the token at positions[k] (predicted at positions[k]-1)."""
    c = positions.numel()
    device = embeds.device
    x = embeds.expand(c, -1, -1).clone().requires_grad_(True)  # [c, T, D]
    mask = torch.ones(x.shape[:2], dtype=torch.long, device=device)
    out = model.llm(inputs_embeds=x, attention_mask=mask, output_attentions=True, use_cache=False)
    maps = list(out.attentions or ())
    names = llm_attention_module_names(model.llm)
    if not maps or any(a is None for a in maps):
        missing = next((i for i, a in enumerate(maps) if a is None), 0)
        where = names[missing] if missing < len(names) else f"layer {missing}"
        raise ConfigError(
            f"LLM attention module '{where}' returned no attention weights under eager attention "
            f"({type(model.llm).__name__}); Text-to-Query needs them (output_attentions=True)"
        )
    predicted_at = (positions - 1).to(device)
    target = out.logits[torch.arange(c, device=device), predicted_at, ids[positions.to(device)]].float().sum()
    grads = torch.autograd.grad(target, maps, allow_unused=True)
    for i, g in enumerate(grads):
        if g is None:
            where = names[i] if i < len(names) else f"layer {i}"
            raise ConfigError(f"LLM attention map of '{where}' received no gradient; cannot weight it")
    cams = [head_mean_relevance(a.detach(), g) for a, g in zip(maps, grads, strict=True)]  # [c, T, T] each
    return decoder_row(cams, predicted_at)
